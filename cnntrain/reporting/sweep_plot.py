"""sweep_summary.png: the monitored metric of every job of a sweep against each parameter the sweep varied.

The picture answers "which setting won, and how much does each knob matter" at a glance, beside the table and
sweep_summary.csv. The panels are planned from the jobs' rows alone (`plan_panels`, pure, so its decisions are
tested without drawing): one panel per key whose value differs between jobs, read from their overrides; names
and other non-numbers on a categorical axis, numbers on a log axis when they are all positive and span 1.5
decades or more (learning rates), else on a linear one. A sweep with one job or nothing varying still gets a
picture: one panel, the metric per job. Failed jobs have no metric: they are left out and counted in the title.

matplotlib is imported inside the drawing functions only, with its object API on the Agg canvas (no pyplot
state, no GUI backend), laid out with fixed margins computed in inches, as in plots.py.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnntrain.reporting.figures import new_figure, save_png
from cnntrain.reporting.sweep_rows import JobRow, job_order

CATEGORY, LOG, LINEAR = "category", "log", "linear"
LOG_DECADES = 1.5  # numbers spanning this many powers of ten or more get a log axis (Optuna's log-uniform
# learning rates over 1e-4..1e-2 seldom reach the full two decades in 20 trials)
JOB_KEY = "job"  # the x axis of the one panel of a sweep where nothing varies
UNSET = "(default)"  # a key one job overrides and another leaves at its config default
MAX_JOB_LABELS = 20  # above this many drawn jobs, the points are not labelled with their job number

PANEL_W, PANEL_H = 4.6, 3.4  # inches
LEFT, RIGHT, BOTTOM = 0.9, 0.3, 0.75  # figure margins, inches
TITLE_LINE, TITLE_GAP = 0.24, 0.5  # inches per title line, and between the title and the panels
TITLE_CHAR = 0.098  # inches per character of the 11.5-point title, for wrapping it
TITLE_X = 0.2  # the title starts this far from the left edge, inches
GAP_W, GAP_H = 0.45, 0.85  # between panels, inches (GAP_H holds the x labels of the row above)
ROTATED_EXTRA = 0.45  # more room under a row whose category labels are slanted
MAX_COLUMNS = 3


@dataclass(frozen=True)
class Point:
    """One drawn job: its number, its value of the panel's key (a number, or a name on a categorical axis), and
    its best value of the monitored metric."""

    job: str
    x: float | str
    y: float


@dataclass(frozen=True)
class Panel:
    """One picture panel: the key on its x axis, how that axis is scaled, the jobs' points, and (categorical
    axes) the categories in the order the sweep ran them."""

    key: str
    scale: str
    points: tuple[Point, ...]
    categories: tuple[str, ...] = ()


def plan_panels(rows: Sequence[JobRow]) -> list[Panel]:
    """The panels of sweep_summary.png, one per key that varies between the drawn jobs (so a failed job whose
    overrides could not be read adds none); none when no job has a metric to draw."""
    drawn = drawn_rows(rows)
    if not drawn:
        return []
    settings = {row.job: parse_overrides(row.overrides) for row in drawn}
    keys = swept_keys([settings[row.job] for row in drawn])
    if not keys:
        points = tuple(Point(row.job, row.job, row.values["best"]) for row in drawn)
        return [Panel(JOB_KEY, CATEGORY, points, tuple(row.job for row in drawn))]
    return [_panel(key, [(row, settings[row.job].get(key, UNSET)) for row in drawn]) for key in keys]


def drawn_rows(rows: Sequence[JobRow]) -> list[JobRow]:
    """The jobs that have a best value of the same monitored metric as the best job, in job order."""
    ranked = [row for row in rows if row.status == "done" and _finite(row.values.get("best"))]
    if not ranked:
        return []
    best = min(ranked, key=lambda row: row.sort_key())
    same = [row for row in ranked if row.values.get("monitor") == best.values.get("monitor")]
    return sorted(same, key=lambda row: job_order(row.job))


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE overrides as a mapping ('+' and '++' prefixes dropped; deletions '~KEY' are not settings)."""
    settings: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and not key.startswith("~"):
            settings[key.lstrip("+")] = value
    return settings


def swept_keys(settings: Sequence[dict[str, str]]) -> list[str]:
    """The keys whose value differs between jobs (a key some jobs leave out differs too), in command-line order."""
    keys = list(dict.fromkeys(key for job in settings for key in job))
    return [key for key in keys if len({job.get(key, UNSET) for job in settings}) > 1]


def axis_scale(values: Sequence[str]) -> str:
    """CATEGORY unless every value is a finite number; then LOG for positive numbers spanning >= 1.5 decades
    (LOG_DECADES), else LINEAR."""
    numbers = [_number(value) for value in values]
    if any(number is None for number in numbers):
        return CATEGORY
    low, high = min(numbers), max(numbers)
    if low > 0 and math.log10(high / low) >= LOG_DECADES:
        return LOG
    return LINEAR


def write_sweep_plot(rows: Sequence[JobRow], path: Path, sweep_name: str = "") -> str:
    """Draw sweep_summary.png and return the one line to print: where it is, or why there is none."""
    panels = plan_panels(rows)
    if not panels:
        return f"{path.name} not drawn: no job of the sweep finished with a value of the monitored metric"
    drawn = drawn_rows(rows)
    best = min(drawn, key=lambda row: row.sort_key())
    figure = sweep_figure(panels, rows, best, sweep_name)
    save_png(figure, path)
    return f"plot of the sweep: {path}"


def sweep_figure(panels: Sequence[Panel], rows: Sequence[JobRow], best: JobRow, sweep_name: str = "") -> Any:
    """The figure of write_sweep_plot: one panel per swept key on a grid at most three wide, one y scale."""
    monitor = str(best.values.get("monitor", "best"))
    percent = monitor.endswith("acc")
    columns = min(len(panels), MAX_COLUMNS)
    grid_rows = math.ceil(len(panels) / columns)
    slanted = [any(_slanted(panel) for panel in panels[r * columns : (r + 1) * columns]) for r in range(grid_rows)]
    bottom = BOTTOM + (ROTATED_EXTRA if slanted[-1] else 0.0)
    gap_h = GAP_H + (ROTATED_EXTRA if any(slanted[:-1]) else 0.0)
    width = LEFT + columns * PANEL_W + (columns - 1) * GAP_W + RIGHT
    title = _wrap(_title(rows, panels, best, monitor, sweep_name), int((width - 2 * TITLE_X) / TITLE_CHAR))
    top = 0.12 + TITLE_LINE * (title.count("\n") + 1) + TITLE_GAP
    height = top + grid_rows * PANEL_H + (grid_rows - 1) * gap_h + bottom
    figure = new_figure(figsize=(width, height))
    figure.subplots_adjust(
        left=LEFT / width,
        right=1 - RIGHT / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=GAP_W / PANEL_W,
        hspace=gap_h / PANEL_H,
    )
    axes = figure.subplots(grid_rows, columns, squeeze=False, sharey=True)
    scale = 100.0 if percent else 1.0
    ys = [point.y * scale for point in panels[0].points]
    limits = _y_limits(ys, best.mode)
    for index, (ax, panel) in enumerate(zip(axes.flat, panels)):
        _draw_panel(ax, panel, best, scale, percent)
        ax.set_ylim(*limits)
        if index % columns == 0:
            ax.set_ylabel(f"best {monitor}" + (" (%)" if percent else ""))
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(title, x=TITLE_X / width, y=1 - 0.12 / height, ha="left", va="top", fontsize=11.5, linespacing=1.5)
    return figure


def _panel(key: str, values: list[tuple[JobRow, str]]) -> Panel:
    scale = axis_scale([value for _, value in values])
    if scale == CATEGORY:
        points = tuple(Point(row.job, value, row.values["best"]) for row, value in values)
        return Panel(key, CATEGORY, points, tuple(dict.fromkeys(value for _, value in values)))
    return Panel(key, scale, tuple(Point(row.job, float(value), row.values["best"]) for row, value in values))


def _draw_panel(ax: Any, panel: Panel, best: JobRow, scale: float, percent: bool) -> None:
    xs = _x_positions(panel)
    others = [(x, p.y * scale) for x, p in zip(xs, panel.points) if p.job != best.job]
    if others:
        ax.scatter(*zip(*others), s=42, color="tab:blue", alpha=0.85, zorder=2, label="job")
    [(best_x, best_y)] = [(x, p.y * scale) for x, p in zip(xs, panel.points) if p.job == best.job]
    ax.scatter([best_x], [best_y], s=230, marker="*", color="tab:red", edgecolors="black", linewidths=0.6, zorder=3)
    if len(panel.points) <= MAX_JOB_LABELS:
        labels: dict[tuple[float, float], list[str]] = {}  # jobs on the very same spot share one label: "3, 5"
        for x, point in zip(xs, panel.points):
            if point.job != best.job:
                labels.setdefault((x, point.y * scale), []).append(point.job)
        for spot, jobs in labels.items():
            ax.annotate(
                ", ".join(jobs),
                spot,
                xytext=(6, 0),
                textcoords="offset points",
                fontsize=8,
                color="dimgray",
                va="center",
            )
    value = f"{best_y:.2f}%" if percent else f"{best_y:.4g}"
    ax.annotate(
        f"best: job {best.job}, {value}",
        (best_x, best_y),
        xytext=(0, 11 if best.mode == "max" else -11),
        textcoords="offset points",
        ha=_anchor(panel, best_x),
        va="bottom" if best.mode == "max" else "top",
        fontsize=9,
        color="tab:red",
        fontweight="bold",
    )
    ax.set_xlabel(panel.key + (" (log scale)" if panel.scale == LOG else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=9)
    if panel.scale == CATEGORY:
        ax.set_xticks(
            range(len(panel.categories)),
            [_short(c) for c in panel.categories],
            rotation=30 if _slanted(panel) else 0,
            ha="right" if _slanted(panel) else "center",
            rotation_mode="anchor",
        )
        ax.set_xlim(-0.6, len(panel.categories) - 0.4)
        return
    if panel.scale == LOG:
        ax.set_xscale("log")
    distinct = sorted({float(p.x) for p in panel.points})
    if len(distinct) <= 8:
        ax.set_xticks(distinct, [f"{x:g}" for x in distinct])
    ax.margins(x=0.18)


def _x_positions(panel: Panel) -> list[float]:
    """Numbers stay where they are; on a categorical axis, the jobs sharing a category are spread a little
    sideways so none hides another."""
    if panel.scale != CATEGORY:
        return [float(p.x) for p in panel.points]
    index = {category: i for i, category in enumerate(panel.categories)}
    counts = {c: sum(p.x == c for p in panel.points) for c in panel.categories}
    seen: dict[str, int] = {}
    positions = []
    for point in panel.points:
        k, n = seen.get(str(point.x), 0), counts[str(point.x)]
        seen[str(point.x)] = k + 1
        spread = min(0.3, 0.08 * (n - 1))
        positions.append(index[str(point.x)] + (0.0 if n == 1 else -spread + 2 * spread * k / (n - 1)))
    return positions


def _anchor(panel: Panel, x: float) -> str:
    """Where the best job's note is anchored, so it stays inside its panel at either edge."""
    if panel.scale == CATEGORY:
        low, high = -0.6, len(panel.categories) - 0.4
    else:
        values = [float(p.x) for p in panel.points]
        low, high = min(values), max(values)
        if panel.scale == LOG:
            low, high, x = math.log10(low), math.log10(high), math.log10(x)
    if high - low <= 0:
        return "center"
    fraction = (x - low) / (high - low)
    return "left" if fraction < 0.3 else "right" if fraction > 0.7 else "center"


def _y_limits(ys: list[float], mode: str) -> tuple[float, float]:
    """The data's range plus room on the better side for the best job's note."""
    low, high = min(ys), max(ys)
    span = high - low or max(abs(high) * 0.02, 0.1)
    if mode == "max":
        return low - 0.12 * span, high + 0.35 * span
    return low - 0.35 * span, high + 0.12 * span


def _title(rows: Sequence[JobRow], panels: Sequence[Panel], best: JobRow, monitor: str, sweep_name: str) -> str:
    drawn = len(panels[0].points)
    failed = sum(row.status != "done" for row in rows)
    other = len(rows) - drawn - failed
    left_out = (f"{failed} failed (left out)" if failed else "none failed") + (
        f", {other} without a {monitor} value (left out)" if other else ""
    )
    what = "per job (no key varies between jobs)" if panels[0].key == JOB_KEY else "against each swept key"
    where = f"sweep {sweep_name}: " if sweep_name else ""
    settings = parse_overrides(best.overrides)
    swept = " ".join(f"{p.key}={settings.get(p.key, UNSET)}" for p in panels if p.key != JOB_KEY)
    value = best.values["best"]
    shown = f"{100 * value:.2f}%" if monitor.endswith("acc") else f"{value:.4g}"
    return (
        f"{where}best {monitor} {what}: {drawn} job{'s' if drawn != 1 else ''} drawn, {left_out}\n"
        f"best: job {best.job}" + (f" ({swept})" if swept else "") + f", {monitor} {shown}"
    )


def _wrap(text: str, width: int) -> str:
    """Lines of at most `width` characters, broken after a phrase (at ': ' or ', '), never inside one unless the
    phrase alone is wider than the line (then at its spaces)."""
    width = max(width, 30)
    lines: list[str] = []
    for line in text.splitlines():
        current = ""
        for phrase in re.split(r"(?<=[:,]) ", line):
            if current and len(current) + 1 + len(phrase) > width:
                lines.append(current)
                current = ""
            current = f"{current} {phrase}" if current else phrase
            if len(current) > width:
                *full, current = textwrap.wrap(current, width, break_long_words=False, break_on_hyphens=False)
                lines.extend(full)
        lines.append(current)
    return "\n".join(lines)


def _slanted(panel: Panel) -> bool:
    """Category labels are slanted when straight ones would run into each other."""
    return panel.scale == CATEGORY and sum(len(_short(c)) + 2 for c in panel.categories) * 0.075 > PANEL_W


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
