"""compare.png: the learning curves of several runs overlaid, one colour per run, for cnntrain-compare.

Three panels side by side (train loss, val loss, val accuracy per epoch) share the runs' colours; the legend
sits in its own band under them, sized to the number of runs, so it never covers a curve. Every epoch is a
hollow marker too, of a shape per run, so a one-epoch run still shows and runs on the same point all show.
A run that recorded its optimizer steps (steps.csv) draws its training loss per step, smoothed, through its
epoch markers, so the shape inside an epoch (a one-epoch speedrun's whole descent) is there to compare.
Object API on the Agg canvas, fixed margins in inches, matplotlib imported only when drawing, as in plots.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnntrain.reporting.figures import new_figure, save_png, smoothed

STEP_PANEL = "train/loss"  # the panel that shows per-step loss when runs have it
PANELS = (("train/loss", "train loss", 1.0), ("val/loss", "val loss", 1.0), ("val/acc", "val accuracy (%)", 100.0))
PANEL_W, PANEL_H = 4.6, 3.4  # inches
LEFT, RIGHT, TOP, GAP_W = 0.8, 0.25, 0.75, 0.7  # inches
AXIS_BAND = 0.6  # under the panels: tick labels and the x label, inches
LEGEND_ROW, LEGEND_PAD = 0.24, 0.25  # inches per legend row, and around the legend
LEGEND_CHAR = 0.075  # inches per character of a 9-point legend label
LEGEND_HANDLE = 0.6  # the line sample and spacing of a legend entry, inches
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")  # hollow, so runs on the same point all show


@dataclass(frozen=True)
class Curves:
    """One run's per-epoch values (None where metrics.csv has no value), its legend label, and its training loss
    per optimizer step as (fractional epoch, loss) pairs, empty when the run has no steps.csv."""

    label: str
    epochs: tuple[int, ...]
    values: dict[str, tuple[float | None, ...]]
    steps: tuple[tuple[float, float], ...] = ()


def plot_compare(runs: Sequence[Curves], path: Path, title: str) -> None:
    """Write compare.png: the runs' curves overlaid, one colour per run, the legend in a band below."""
    width = LEFT + len(PANELS) * PANEL_W + (len(PANELS) - 1) * GAP_W + RIGHT
    columns = legend_columns([run.label for run in runs], width - 0.4)
    legend_h = LEGEND_ROW * math.ceil(len(runs) / columns) + 2 * LEGEND_PAD
    bottom = AXIS_BAND + legend_h
    height = TOP + PANEL_H + bottom
    figure = new_figure(figsize=(width, height))
    figure.subplots_adjust(
        left=LEFT / width, right=1 - RIGHT / width, top=1 - TOP / height, bottom=bottom / height, wspace=GAP_W / PANEL_W
    )
    axes = figure.subplots(1, len(PANELS))
    colours = run_colours(len(runs))
    epochs = [e for run in runs for e in run.epochs] or [1]
    pad = max(0.5, 0.03 * (max(epochs) - min(epochs)))
    steps_from = min((at for run in runs for at, _ in run.steps[:1]), default=None)
    for ax, (metric, name, scale) in zip(axes, PANELS):
        per_step = metric == STEP_PANEL and steps_from is not None
        for index, (run, colour) in enumerate(zip(runs, colours)):
            points = [(e, v * scale) for e, v in zip(run.epochs, run.values[metric]) if v is not None]
            if per_step and run.steps:
                line = smoothed([loss for _, loss in run.steps])
                ax.plot([at for at, _ in run.steps], line, linewidth=1.3, color=colour, alpha=0.9)
                points = epoch_ends(run.steps, line, run.epochs)  # the markers sit on the line, not at the mean
            ax.plot(
                [e for e, _ in points],
                [v for _, v in points],
                marker=MARKERS[index % len(MARKERS)],
                markersize=6,
                markerfacecolor="none",
                markeredgewidth=1.4,
                linewidth=0 if per_step and run.steps else 1.5,
                color=colour,
                label=run.label,
                alpha=0.9,
            )
        ax.set_title(name + (" (per step, smoothed)" if per_step else ""), fontsize=11)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
        low = min(min(epochs) - pad, math.floor(steps_from)) if per_step else min(epochs) - pad
        ax.set_xlim(low, max(epochs) + pad)  # one epoch: an axis around it, not 0.96..1.04
        if max(epochs) - min(epochs) < 10:
            ax.set_xticks(range(max(0, math.ceil(low - 0.05)), max(epochs) + 1))  # a tick per epoch, none between
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="lower left",
        bbox_to_anchor=(0.2 / width, LEGEND_PAD / height),
        ncol=columns,
        fontsize=9,
        frameon=False,
        borderaxespad=0.0,
        handlelength=1.6,
        columnspacing=1.2,
    )
    figure.suptitle(title, x=0.2 / width, y=1 - 0.15 / height, ha="left", va="top", fontsize=12)
    save_png(figure, path)


def epoch_ends(
    steps: Sequence[tuple[float, float]], line: Sequence[float], epochs: Sequence[int]
) -> list[tuple[int, float]]:
    """Where the smoothed per-step line stands at the end of each epoch (its last step at or before it)."""
    ends, index = [], 0
    for epoch in epochs:
        while index + 1 < len(steps) and steps[index + 1][0] <= epoch + 1e-9:
            index += 1
        if steps[index][0] <= epoch + 1e-9:
            ends.append((epoch, line[index]))
    return ends


def legend_columns(labels: Sequence[str], width: float) -> int:
    """How many legend entries go side by side in `width` inches: at most four, as few rows as that allows,
    and the rows filled evenly."""
    longest = max((len(label) for label in labels), default=1)
    fit = max(1, min(4, len(labels), int(width // (longest * LEGEND_CHAR + LEGEND_HANDLE))))
    rows = math.ceil(len(labels) / fit)
    return max(1, math.ceil(len(labels) / rows))  # balanced: 6 labels make 2 rows of 3, not columns of 2, 2, 1, 1


def run_colours(count: int) -> list[tuple[float, ...]]:
    """One distinct colour per run: the 10 tab colours, 20 paired ones, then samples of a continuous map."""
    from matplotlib import colormaps  # only when drawing: matplotlib takes a second to import

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](0.05 + 0.9 * i / (count - 1)) for i in range(count)]
