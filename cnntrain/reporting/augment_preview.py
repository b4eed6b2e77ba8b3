"""augment_preview.png: the first training images of the run as the model sees them after `dataset.augment`, so a
policy that is too strong (or a flip that is wrong for the data) shows before any epoch has finished.

The batch is epoch 1's first global batch, drawn from a generator of its own seeded as the run's: the run's own
random numbers are not touched, so writing the picture changes nothing in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnntrain.data.augment import Augment
from cnntrain.data.batches import global_batch_size
from cnntrain.data.containers import iterate_batches
from cnntrain.reporting.figures import new_figure, save_png

SHOWN = 32  # images in the grid
COLUMNS = 8


def write_augment_preview(path: Path, data: Any, augment: Augment, batch_size: int, seed: int) -> None:
    """Draw the first SHOWN images of epoch 1's first batch after the augmentation, titled with their (mixed)
    labels, into `path`."""
    images, targets = preview_batch(data.train, augment, batch_size, seed)
    draw_preview(path, images[:SHOWN].cpu(), targets[:SHOWN].cpu(), list(data.classes), augment.names)


def preview_batch(split: Any, augment: Augment, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Epoch 1's first batch (as one process draws it) after the augmentation: uint8 images and their targets."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = next(iter(iterate_batches(split, batch_size, shuffle=True, generator=generator)))
    return augment(images, labels, generator, global_batch_size(len(split), batch_size, 1), 0)


def draw_preview(
    path: Path, images: torch.Tensor, targets: torch.Tensor, classes: list[str], names: tuple[str, ...]
) -> None:
    """A grid of uint8 images [N, C, H, W]; each title its class, or its two largest shares of a mixed target."""
    rows = -(-len(images) // COLUMNS)
    figure = new_figure(figsize=(COLUMNS * 1.6, rows * 1.8 + 0.4))
    figure.suptitle(f"first training images after dataset.augment: {', '.join(names)}", fontsize=10)
    for i, image in enumerate(images):
        axis = figure.add_subplot(rows, COLUMNS, i + 1)
        picture = image.permute(1, 2, 0).numpy()
        if picture.shape[2] == 1:
            axis.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            axis.imshow(picture)
        axis.set_title(label_text(targets[i], classes), fontsize=7)
        axis.set_axis_off()
    figure.tight_layout()
    save_png(figure, path)


def label_text(target: torch.Tensor, classes: list[str]) -> str:
    """'shirt' for a class index; '0.62 shirt + 0.38 coat' for a target that mixes two classes."""
    if target.ndim == 0:
        return classes[int(target)]
    shares, which = target.float().topk(min(2, len(target)))
    if shares[-1] < 0.005:  # what would print as "1.00 x + 0.00 y"
        return classes[int(which[0])]
    return " + ".join(f"{float(s):.2f} {classes[int(c)]}" for s, c in zip(shares, which))
