"""The vectorised batch ops that `dataset.augment` names, each registered under its name (the policies are in
cnntrain.data.augment_policies; why the ops are written this way: cnntrain.data.augment).

An op is called as op(images, generator, drawn, rows): it augments this rank's `rows` of a global batch of `drawn`
images, with the numbers drawn for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnntrain.data.augment_registry import KEY, number, number_range, register
from cnntrain.data.mixing import Mixing, box_mask
from cnntrain.errors import ConfigError


@dataclass(frozen=True)
class Translate:
    pixels: int
    label: str = "translate"

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """A shift must leave part of the image in view: pixels < the image's height and width."""
        height, width = input_shape[1:]
        if self.pixels >= min(height, width):
            raise ConfigError(
                f"{KEY}.{self.label}={self.pixels}: must be smaller than the images' {height}x{width} "
                f"pixels (a shift that large leaves nothing of the image)"
            )

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        return random_translate(images, self.pixels, generator, drawn, rows)


@register("translate", primary="pixels")
def translate(pixels: int = 2) -> Translate:
    """Shift each image by up to `pixels` in x and y (zero fill)."""
    if isinstance(pixels, int) and not isinstance(pixels, bool) and pixels < 0:
        raise ConfigError(f"{KEY}.translate={pixels}: must be >= 0 pixels")
    return Translate(number("translate", pixels, 0, math.inf, whole=True))


@register("random_crop", primary="padding")
def random_crop(padding: int = 4) -> Translate:
    """Pad by `padding` (zeros) and crop back to the image's size at a random place: a translate by up to padding."""
    return Translate(number("random_crop.padding", padding, 0, math.inf, whole=True), "random_crop.padding")


@dataclass(frozen=True)
class HFlip:
    p: float

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        return random_hflip(images, generator, drawn, rows, self.p)


@register("hflip", primary="p")
def hflip(p: float = 0.5) -> HFlip:
    """Mirror each image left-right with probability p (clothing yes, digits no)."""
    return HFlip(number("hflip.p", p, 0, 1))


@dataclass(frozen=True)
class ResizedCrop:
    scale: tuple[float, float]
    ratio: tuple[float, float]

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        return random_resized_crop(images, self.scale, self.ratio, generator, drawn, rows)


@register("random_resized_crop", primary="scale")
def random_resized_crop_op(
    scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)
) -> ResizedCrop:
    """Crop a random area fraction `scale` of aspect `ratio` and resize it back to the image's size (bilinear)."""
    return ResizedCrop(
        number_range("random_resized_crop.scale", scale, 0, 1),
        number_range("random_resized_crop.ratio", ratio, 0, math.inf),
    )


@dataclass(frozen=True)
class Erasing:
    p: float
    scale: tuple[float, float]
    ratio: tuple[float, float]
    value: int

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        return random_erasing(images, self.p, self.scale, self.ratio, self.value, generator, drawn, rows)


@register("random_erasing", primary="p")
def random_erasing_op(
    p: float = 0.5, scale: Sequence[float] = (0.02, 0.33), ratio: Sequence[float] = (0.3, 3.3), value: int = 0
) -> Erasing:
    """With probability p, fill a random rectangle (area fraction `scale`, aspect `ratio`) with pixel `value`."""
    return Erasing(
        number("random_erasing.p", p, 0, 1),
        number_range("random_erasing.scale", scale, 0, 1),
        number_range("random_erasing.ratio", ratio, 0, math.inf),
        number("random_erasing.value", value, 0, 255, whole=True),
    )


@register("mixup", primary="alpha")
def mixup_op(alpha: float = 1.0) -> Mixing:
    """Blend each image with another: lam*image + (1-lam)*other, targets likewise; lam ~ Beta(alpha, alpha)."""
    return Mixing("mixup", number("mixup.alpha", alpha, 0, math.inf, open_low=True))


@register("cutmix", primary="alpha")
def cutmix_op(alpha: float = 1.0) -> Mixing:
    """Paste a random box of another image; targets weighted by the areas; box area 1-lam, lam ~ Beta(alpha, alpha)."""
    return Mixing("cutmix", number("cutmix.alpha", alpha, 0, math.inf, open_low=True))


def random_translate(
    images: torch.Tensor, pixels: int, generator: torch.Generator, drawn: int | None = None, rows: slice = slice(None)
) -> torch.Tensor:
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


def random_hflip(
    images: torch.Tensor,
    generator: torch.Generator,
    drawn: int | None = None,
    rows: slice = slice(None),
    p: float = 0.5,
) -> torch.Tensor:
    flip = (torch.rand(drawn or images.shape[0], generator=generator)[rows] < p).to(images.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_resized_crop(
    images: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    drawn: int | None = None,
    rows: slice = slice(None),
) -> torch.Tensor:
    """Each image its own box (area fraction in `scale`, log-uniform aspect in `ratio`, clamped to the image
    where torchvision would retry), resized back to the image's size by one batched bilinear grid_sample."""
    batch, _, height, width = images.shape
    u = torch.rand(4, drawn or batch, generator=generator, dtype=torch.float64)[:, rows]
    area = scale[0] + (scale[1] - scale[0]) * u[0]
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # box sides as fractions of the image's
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (w / 2 + (1 - w) * u[2]) * 2 - 1  # box centre in grid_sample's [-1, 1]
    cy = (h / 2 + (1 - h) * u[3]) * 2 - 1
    theta = torch.zeros(len(w), 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    theta = theta.float().to(images.device, non_blocking=True)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(images.dtype)


def random_erasing(
    images: torch.Tensor,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    value: int,
    generator: torch.Generator,
    drawn: int | None = None,
    rows: slice = slice(None),
) -> torch.Tensor:
    """Each image with probability p gets its own box filled with `value`; one mask for the whole batch."""
    batch, _, height, width = images.shape
    u = torch.rand(5, drawn or batch, generator=generator, dtype=torch.float64)[:, rows]
    area = (scale[0] + (scale[1] - scale[0]) * u[1]) * height * width
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[2])
    h = torch.sqrt(area * aspect).round().clamp(1, height).long()
    w = torch.sqrt(area / aspect).round().clamp(1, width).long()
    top = (u[3] * (height - h + 1)).long()
    left = (u[4] * (width - w + 1)).long()
    boxes = torch.stack([top, top + h, left, left + w, (u[0] < p).long()]).to(images.device, non_blocking=True)
    return images.masked_fill(box_mask(boxes, height, width, images.device), value)
