"""The pictures in a run directory: learning curves, the confusion matrix, misclassified test images (the
analysis's pictures are analysis_plots.py).

matplotlib is imported here only, so a run with `report.plots=false` never loads it. Figures are made with
its object API and drawn by the Agg canvas (no pyplot: no GUI backend, no global figure list, and a
quarter of a second less to import); each is laid out once (constrained layout) and written atomically.
The misclassified grid is written with Pillow: its hundred titles take matplotlib most of a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnntrain.config.names import STEP_LOSS
from cnntrain.data.containers import images_at
from cnntrain.files import atomic_write
from cnntrain.reporting.figures import new_figure, save_png, smoothed
from cnntrain.reporting.run_dir import RunDir, read_steps

MAX_MISCLASSIFIED = 100


def plot_curves(history: list[dict[str, Any]], path: Path, steps: list[dict[str, float]] | None = None) -> None:
    """Loss, accuracy and learning rate, one panel each, on an axis of (fractional) epochs.

    With the run's optimizer steps (steps.csv), the training loss is drawn per step, faint, with a smoothed
    line over it, and the learning rate per step: a one-epoch OneCycle run shows its whole schedule. The
    epoch means (train) and the validation points sit at the end of each epoch."""
    epochs = [row["epoch"] for row in history]
    fig = new_figure(figsize=(15, 4))
    # fixed margins: the panels hold numbers only, and a layout engine would double the drawing time
    fig.subplots_adjust(left=0.05, right=0.985, bottom=0.13, top=0.91, wspace=0.22)
    axes = fig.subplots(1, 3)
    if steps:
        at = [row["epoch"] for row in steps]
        loss = [row[STEP_LOSS] for row in steps]
        axes[0].plot(at, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="train, per step")
        axes[0].plot(at, smoothed(loss), color="tab:blue", linewidth=1.6, label="train, smoothed")
        axes[2].plot(at, [row["lr"] for row in steps], color="tab:green", linewidth=1.4)
    else:
        axes[2].plot(epochs, [row["lr"] for row in history], marker="o", color="tab:green")
    for ax, metric, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy (%)")):
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            if split == "train" and metric == "loss" and steps:
                continue  # the per-step curve says it, and its mean would sit off the smoothed line
            values = [row[f"{split}/{metric}"] * (100 if metric == "acc" else 1) for row in history]
            ax.plot(epochs, values, marker="o", color=color, label=f"{split}, per epoch")
        ax.set_title(title)
        ax.legend()
    axes[2].set_title("learning rate" + (" (per step)" if steps else ""))
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if epochs:  # from 0 when steps start there; a little room on the right for the last epoch's markers
            ax.set_xlim(0 if steps else None, max(epochs) + 0.02 * max(epochs))
    save_png(fig, path)


def plot_confusion_matrix(matrix: torch.Tensor, classes: list[str], path: Path) -> None:
    """Rows normalised to 1 (recall per true class), with the class names on both axes."""
    counts = matrix.double().cpu()
    normalised = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    side = max(6.0, 0.6 * n + 2)
    fig = new_figure(figsize=(side, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(normalised.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (each row sums to 1)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                value = float(normalised[i, j])
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > 0.5 else "black",
                )
    save_png(fig, path)


TILE_INCHES = 1.9  # width of one grid cell in the misclassified figure
TILE_PIXELS = 112  # a tile's longer side in misclassified.png (small images are enlarged to it)
HEADER_PIXELS = 32  # the title line above the grid in misclassified.png
GAP_X, GAP_Y = 0.15, 0.45  # space between tiles, as fractions of a tile's width / height (titles go above)


def mosaic(tiles: torch.Tensor, cols: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """uint8 tiles [N, C, H, W] laid out `cols` wide on white, as one RGB [height, width, 3] image,
    plus each tile's top-left (row, column) pixel: one imshow draws in a fraction of the time of N axes."""
    count, channels, height, width = tiles.shape
    rows = math.ceil(count / cols)
    gap_x, gap_y = max(1, round(width * GAP_X)), max(1, round(height * GAP_Y))
    cell_w, cell_h = width + gap_x, height + gap_y
    canvas = torch.full((rows * cell_h, cols * cell_w, 3), 255, dtype=torch.uint8)
    rgb = tiles.expand(-1, 3, -1, -1) if channels == 1 else tiles[:, :3]
    origins = []
    for i in range(count):
        top, left = (i // cols) * cell_h + gap_y, (i % cols) * cell_w + gap_x // 2
        canvas[top : top + height, left : left + width] = rgb[i].permute(1, 2, 0)
        origins.append((top, left))
    return canvas, origins


def misclassified_figure(
    images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, classes: list[str]
) -> Any | None:
    """A matplotlib figure of up to 100 wrong test images titled 'pred (true)' (TensorBoard's); None when every
    image is right."""
    picked = _misclassified(images, labels, preds, classes)
    if picked is None:
        return None
    canvas, origins, titles, cols = picked
    return titled_mosaic(canvas, origins, titles, images.shape[3], cols * TILE_INCHES, _grid_title(len(titles)))


def titled_mosaic(
    canvas: torch.Tensor,
    origins: list[tuple[int, int]],
    titles: list[str],
    width: int,
    fig_w: float,
    suptitle: str,
    *,
    margin: float = 0.5,
    fontsize: int = 8,
) -> Any:
    """A figure of a mosaic (see mosaic) with a red title above each tile and one over the whole grid."""
    fig_h = fig_w * canvas.shape[0] / canvas.shape[1] + margin
    fig = new_figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - margin / fig_h))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.axis("off")
    for (top, left), title in zip(origins, titles):
        ax.text(left + width / 2, top - 0.5, title, ha="center", va="bottom", fontsize=fontsize, color="tab:red")
    fig.suptitle(suptitle, y=1.0 - 0.1 / fig_h, va="top")
    return fig


def plot_misclassified(
    images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, classes: list[str], path: Path
) -> None:
    """misclassified.png, the same grid drawn with Pillow (a hundred matplotlib text artists take most of a
    second here); written even when nothing is wrong, saying so, so the file is always there."""
    from PIL import Image, ImageDraw, ImageFont  # only when pictures are drawn (report.plots)

    picked = _misclassified(images, labels, preds, classes)
    font = ImageFont.load_default(size=13)
    if picked is None:
        image = Image.new("RGB", (320, 60), "white")
        ImageDraw.Draw(image).text((160, 30), "no misclassified test images", fill="black", font=font, anchor="mm")
    else:
        canvas, origins, titles, _ = picked
        height, width = images.shape[2:]
        scale = max(1, math.ceil(TILE_PIXELS / max(height, width)))  # nearest-neighbour, as the figure shows them
        big = canvas.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        image = Image.new("RGB", (big.shape[1], big.shape[0] + HEADER_PIXELS), "white")
        image.paste(Image.fromarray(big.numpy()), (0, HEADER_PIXELS))
        draw = ImageDraw.Draw(image)
        draw.text(
            (image.width / 2, HEADER_PIXELS / 2),
            _grid_title(len(titles)),
            fill="black",
            font=ImageFont.load_default(size=16),
            anchor="mm",
        )
        for (top, left), title in zip(origins, titles):
            draw.multiline_text(
                ((left + width / 2) * scale, HEADER_PIXELS + top * scale - 2),
                title,
                fill=(214, 39, 40),
                font=font,
                anchor="md",
                align="center",
            )
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _misclassified(
    images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, classes: list[str]
) -> tuple[torch.Tensor, list[tuple[int, int]], list[str], int] | None:
    """(canvas, tile origins, titles 'pred\n(true)', columns) of up to 100 wrong images; None if none is wrong."""
    wrong = (preds.cpu() != labels.cpu()).nonzero().squeeze(1)[:MAX_MISCLASSIFIED]
    if wrong.numel() == 0:
        return None
    cols = min(10, wrong.numel())
    tiles = images_at(images, wrong.tolist())
    canvas, origins = mosaic(tiles, cols)
    titles = [f"{classes[int(preds[i])]}\n({classes[int(labels[i])]})" for i in wrong.tolist()]
    return canvas, origins, titles, cols


def _grid_title(count: int) -> str:
    return f"misclassified test images: predicted (true), first {count}"


def write_plots(
    paths: RunDir,
    history: list[dict[str, Any]],
    matrix: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    preds: torch.Tensor,
    classes: list[str],
) -> tuple[Path, ...]:
    """All three pictures of a finished run; returns their paths."""
    curves, confusion, misclassified = paths.plots
    plot_curves(history, curves, read_steps(paths.steps_csv))
    plot_confusion_matrix(matrix, classes, confusion)
    plot_misclassified(images, labels, preds, classes, misclassified)
    return paths.plots
