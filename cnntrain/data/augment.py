"""Per-batch augmentation on the training device, on uint8 images, vectorised over the batch.

The random draws come from the CPU shuffle generator (a few numbers per batch), so a run stays
reproducible and resumable without another RNG to checkpoint. In a data-parallel run each rank draws the
numbers of the whole global batch and uses those of its share: the ranks' generators stay in step (they
also draw the next permutation) and each image is augmented as one process would have augmented it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    translate: int = 0   # shift each image by up to this many pixels in x and y (zero fill)
    hflip: bool = False  # mirror half of the images left-right

    @property
    def enabled(self) -> bool:
        return self.translate > 0 or self.hflip

    def __call__(self, images: torch.Tensor, generator: torch.Generator, batch: int | None = None,
                 first: int = 0) -> torch.Tensor:
        """Augment `images`, rows first.. of a global batch of `batch` images (default: the images alone)."""
        rows = slice(first, first + images.shape[0])
        batch = images.shape[0] if batch is None else batch
        if self.translate > 0:
            images = random_translate(images, self.translate, generator, batch, rows)
        if self.hflip:
            images = random_hflip(images, generator, batch, rows)
        return images


def check_augment(augment: Any, input_shape: tuple[int, ...]) -> None:
    """A shift must leave part of the image in view: translate < the image's height and width."""
    from cnntrain.errors import ConfigError

    height, width = input_shape[1:]
    if augment.translate >= min(height, width):
        raise ConfigError(f"dataset.augment.translate={augment.translate}: must be smaller than the images' "
                          f"{height}x{width} pixels (a shift that large leaves nothing of the image)")


def random_translate(images: torch.Tensor, pixels: int, generator: torch.Generator, drawn: int | None = None,
                     rows: slice = slice(None)) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [-pixels, pixels]: pad, then crop per sample.
    (`drawn` offsets are drawn and `rows` of them used: see the module's note on data-parallel runs.)"""
    batch, _, height, width = images.shape
    offsets = torch.randint(0, 2 * pixels + 1, (2, drawn or batch), generator=generator)[:, rows]
    offsets = offsets.to(images.device, non_blocking=True)
    padded = F.pad(images, (pixels, pixels, pixels, pixels))
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    index = torch.arange(batch, device=images.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, generator: torch.Generator, drawn: int | None = None,
                 rows: slice = slice(None)) -> torch.Tensor:
    flip = (torch.rand(drawn or images.shape[0], generator=generator)[rows] < 0.5).to(images.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], images.flip(3), images)
