"""mixup and cutmix: each image of a batch mixed with the previous one (the first with the last), and its
targets in the same proportions. Class indices arrive as one-hot rows (cnntrain.data.augment); multi-hot label
sets are mixed as they are, so a label kept on half the pixels is a target of one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mixing:
    kind: str
    alpha: float

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mix = mixup if self.kind == "mixup" else cutmix
        return mix(images, targets, self.alpha, generator, drawn, rows)


def mixup(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    generator: torch.Generator,
    drawn: int | None = None,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image i blended with image i-1 of the batch (the last with the first): lam_i ~ Beta(alpha, alpha)."""
    lam = beta(alpha, drawn or images.shape[0], generator)[rows].float().to(images.device, non_blocking=True)
    other, other_targets = images.roll(1, 0), targets.roll(1, 0)
    mixed = lam[:, None, None, None] * images.float() + (1 - lam[:, None, None, None]) * other.float()
    return mixed.round_().to(images.dtype), lam[:, None] * targets + (1 - lam[:, None]) * other_targets


def cutmix(
    images: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    generator: torch.Generator,
    drawn: int | None = None,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image i gets a box of image i-1 pasted in: the box covers about 1-lam of it (lam ~ Beta(alpha, alpha)),
    centred anywhere and clipped at the borders; the targets are weighted by the areas actually kept and pasted."""
    batch, _, height, width = images.shape
    count = drawn or batch
    lam = beta(alpha, count, generator)[rows]
    centre = torch.rand(2, count, generator=generator, dtype=torch.float64)[:, rows]
    side = torch.sqrt(1 - lam)
    cy, cx = centre[0] * height, centre[1] * width
    top = (cy - side * height / 2).round().clamp(0, height).long()
    bottom = (cy + side * height / 2).round().clamp(0, height).long()
    left = (cx - side * width / 2).round().clamp(0, width).long()
    right = (cx + side * width / 2).round().clamp(0, width).long()
    pasted = ((bottom - top) * (right - left)).double() / (height * width)
    boxes = torch.stack([top, bottom, left, right, torch.ones_like(top)]).to(images.device, non_blocking=True)
    mask = box_mask(boxes, height, width, images.device)
    kept = (1 - pasted).float().to(images.device, non_blocking=True)[:, None]
    return torch.where(mask, images.roll(1, 0), images), kept * targets + (1 - kept) * targets.roll(1, 0)


def box_mask(boxes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """[N, 1, H, W] True inside each image's box (rows top:bottom, cols left:right) where its flag is set."""
    top, bottom, left, right, on = boxes
    ys = torch.arange(height, device=device)[None, :, None]
    xs = torch.arange(width, device=device)[None, None, :]
    inside = (
        (ys >= top[:, None, None])
        & (ys < bottom[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < right[:, None, None])
        & on.bool()[:, None, None]
    )
    return inside[:, None]


def beta(alpha: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` draws of Beta(alpha, alpha) from the run's generator (torch's Beta sampler takes no generator:
    numpy's, seeded by one number of ours, does the sampling)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, count))
