"""The two matplotlib calls every picture shares: a Figure on an Agg canvas, and its atomic PNG write.

Object API only (no pyplot: no GUI backend, no global figure list); importing this module loads neither
matplotlib nor torch, so commands that draw nothing stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.files import atomic_write


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: Path) -> None:
    """Write the figure as a PNG atomically (a reader never sees half a file)."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
