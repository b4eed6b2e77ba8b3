"""What every picture shares: a Figure on an Agg canvas, its atomic PNG write, and the smoothing of noisy
per-step curves.

Object API only (no pyplot: no GUI backend, no global figure list); importing this module loads neither
matplotlib nor torch, so commands that draw nothing stay fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnntrain.files import atomic_write
from cnntrain.reporting.text import plain


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on an Agg canvas."""
    # matplotlib only when a figure is drawn (report.plots=false never loads it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: Path) -> None:
    """Write the figure as a PNG atomically (a reader never sees half a file). Every text is drawn as written:
    titles, ticks and legends carry class names and config values from files (control characters are shown
    escaped, as everywhere), and matplotlib would read `$...$` in them as math (a class named `$\\oops$`
    stopped the run's pictures with a parse error)."""
    from matplotlib.text import Text  # only when a figure is drawn

    for text in figure.findobj(Text):
        text.set_parse_math(False)
        text.set_text(plain(text.get_text(), keep_lines=True))  # control characters shown escaped
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def smoothed(values: list[float], span: int | None = None) -> list[float]:
    """An exponential moving average with its start-up bias removed (as TensorBoard's smoothing); the span
    defaults to a fiftieth of the series, so a curve of any length keeps its shape."""
    span = span or max(1, len(values) // 50)
    decay = 1 - 2 / (span + 1)
    out, average, weight = [], 0.0, 0.0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        average = decay * average + (1 - decay) * value
        weight = decay * weight + (1 - decay)
        out.append(average / weight)
    return out
