"""The pictures in a run directory: learning curves, the confusion matrix, misclassified test images.

matplotlib runs headless (Agg) and is imported here only, so a run with `report.plots=false` never loads it.
Each PNG is written atomically, like every other file of a run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnntrain.files import atomic_write
from cnntrain.reporting.run_dir import RunDir

MAX_MISCLASSIFIED = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, tight: bool = True) -> None:
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight" if tight else None))
    plt.close(fig)


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss, accuracy and learning rate per epoch, one panel each, train and val together."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    for ax, metric, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy (%)")):
        for split in ("train", "val"):
            values = [row[f"{split}/{metric}"] * (100 if metric == "acc" else 1) for row in history]
            ax.plot(epochs, values, marker="o", label=split)
        ax.set_title(title)
        ax.legend()
    axes[2].plot(epochs, [row["lr"] for row in history], marker="o", color="tab:green")
    axes[2].set_title("learning rate")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)


def plot_confusion_matrix(matrix: torch.Tensor, classes: list[str], path: Path) -> None:
    """Rows normalised to 1 (recall per true class), with the class names on both axes."""
    plt = _pyplot()
    counts = matrix.double().cpu()
    normalised = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    side = max(6.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side))
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
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 else "black")
    _save(fig, path)


TILE_INCHES = 1.9     # width of one grid cell in the misclassified figure
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
        canvas[top:top + height, left:left + width] = rgb[i].permute(1, 2, 0)
        origins.append((top, left))
    return canvas, origins


def misclassified_figure(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor,
                         classes: list[str]) -> Any | None:
    """A grid of up to 100 wrong test images titled 'pred (true)'; None when every image is right."""
    plt = _pyplot()
    wrong = (preds.cpu() != labels.cpu()).nonzero().squeeze(1)[:MAX_MISCLASSIFIED]
    if wrong.numel() == 0:
        return None
    cols = min(10, wrong.numel())
    tiles = torch.stack([images[i].cpu() for i in wrong.tolist()])  # one by one: images may be LazyImages
    canvas, origins = mosaic(tiles, cols)
    height, width = images.shape[2:]
    fig_w = cols * TILE_INCHES
    fig_h = fig_w * canvas.shape[0] / canvas.shape[1] + 0.5
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.5 / fig_h))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.axis("off")
    for (top, left), index in zip(origins, wrong.tolist()):
        ax.text(left + width / 2, top - 0.5, f"{classes[int(preds[index])]}\n({classes[int(labels[index])]})",
                ha="center", va="bottom", fontsize=8, color="tab:red")
    fig.suptitle(f"misclassified test images: predicted (true), first {wrong.numel()}", y=1.0 - 0.1 / fig_h,
                 va="top")
    return fig


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, classes: list[str],
                       path: Path) -> None:
    """misclassified.png; written even when nothing is wrong, saying so, so the file is always there."""
    fig = misclassified_figure(images, labels, preds, classes)
    if fig is None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
        _save(fig, path)
        return
    _save(fig, path, tight=False)  # laid out exactly already; a tight bounding box costs a second draw


def write_plots(paths: RunDir, history: list[dict[str, Any]], matrix: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor, preds: torch.Tensor, classes: list[str]) -> tuple[Path, ...]:
    """All three pictures of a finished run; returns their paths."""
    curves, confusion, misclassified = paths.plots
    plot_curves(history, curves)
    plot_confusion_matrix(matrix, classes, confusion)
    plot_misclassified(images, labels, preds, classes, misclassified)
    return paths.plots
