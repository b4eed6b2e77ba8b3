"""The pictures in a run directory: learning curves, the confusion matrix, misclassified test images.

matplotlib runs headless (Agg) and is imported here only, so a run with `report.plots=false` never loads it.
Each PNG is written atomically, like every other file of a run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnntrain.checkpoint import atomic_write

MAX_MISCLASSIFIED = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
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


def misclassified_figure(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor,
                         classes: list[str]) -> Any | None:
    """A grid of up to 100 wrong test images titled 'pred (true)'; None when every image is right."""
    plt = _pyplot()
    wrong = (preds.cpu() != labels.cpu()).nonzero().squeeze(1)[:MAX_MISCLASSIFIED]
    if wrong.numel() == 0:
        return None
    cols = min(10, wrong.numel())
    rows = math.ceil(wrong.numel() / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.1 + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, wrong.tolist()):
        image = images[index].cpu()
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        title = f"{classes[int(preds[index])]}\n({classes[int(labels[index])]})"
        ax.set_title(title, fontsize=8, color="tab:red")
    fig.suptitle(f"misclassified test images: predicted (true), first {wrong.numel()}")
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


def write_plots(run_dir: Path, history: list[dict[str, Any]], matrix: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor, preds: torch.Tensor, classes: list[str]) -> list[Path]:
    """All three pictures of a finished run; returns their paths."""
    paths = [run_dir / "curves.png", run_dir / "confusion_matrix.png", run_dir / "misclassified.png"]
    plot_curves(history, paths[0])
    plot_confusion_matrix(matrix, classes, paths[1])
    plot_misclassified(images, labels, preds, classes, paths[2])
    return paths
