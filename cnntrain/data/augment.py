"""Per-batch augmentation on the training device, on uint8 images: the registry of augmentations a config can
name (`dataset.augment`, an ordered list, as model layers are named), the policy built from it, and the
vectorised batch ops.

How each op is done, chosen by measurement on 28x28 and 32x32 batches of 128-512 images:
- translate / random_crop, hflip, random_resized_crop, random_erasing, mixup, cutmix: our own ops, vectorised
  over the batch with per-image parameters (gather, torch.where, one affine grid_sample, masks). A torchvision v2
  transform called on a batch draws one set of parameters for the whole batch, and calling it per image costs a
  Python round trip and a few kernels per image (about 50x slower on a GPU at these sizes).
- randaugment, trivialaugment, autoaugment (cnntrain.data.augment_policies): each image draws its own ops and
  magnitudes here; torchvision v2's own op code then runs once per group of images that drew the same (op,
  magnitude), so the images come out exactly as v2 makes them, in at most a few dozen calls per batch.

Randomness: every number comes from the run's CPU shuffle generator (a few numbers per image per batch), so a run
is reproducible and resumable without another RNG to checkpoint; v2's op code is called with its parameters
given, so it draws nothing. In a data-parallel run each rank draws the numbers of the whole global batch and uses
those of its share: the ranks' generators stay in step (they also draw the next permutation) and each image is
augmented as one process would have augmented it. The one exception is the mixing partner of mixup/cutmix: an
image is mixed with the previous image of its own rank's share (the ranks do not exchange images), so a
data-parallel run pairs images differently from one process; its lambdas and boxes are the same.

mixup and cutmix act last, on the augmented images, wherever they are listed; listing both picks one of them per
batch (a coin drawn per batch). Their targets are class probabilities (soft labels) for the cross_entropy loss
(multi-hot label sets are mixed as they are: cnntrain.data.mixing).
The old mapping form `{translate: N, hflip: bool}` means the list `[translate: N, hflip]` and draws exactly the
numbers it always drew.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from cnntrain.data.mixing import Mixing, box_mask
from cnntrain.errors import ConfigError, did_you_mean

KEY = "dataset.augment"
OLD_FORM_KEYS = ("translate", "hflip")
MIXING = ("mixup", "cutmix")


class BatchOp(Protocol):
    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        """Augment this rank's `rows` of a global batch of `drawn` images (numbers drawn for all of them)."""


@dataclass(frozen=True)
class AugmentSpec:
    """One registered augmentation: its builder (keyword arguments -> op), the argument a scalar fills, a line."""

    name: str
    builder: Callable[..., Any]
    primary: str | None
    doc: str

    @property
    def arguments(self) -> dict[str, Any]:
        return {p.name: p.default for p in inspect.signature(self.builder).parameters.values()}


_REGISTRY: dict[str, AugmentSpec] = {}


def register(name: str, *, primary: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make an op builder usable in `dataset.augment` under `name`. A builder checks its arguments
    and raises ConfigError naming `dataset.augment.<name>.<argument>`."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"augmentation '{name}' is already registered")
        _REGISTRY[name] = AugmentSpec(name, builder, primary, (builder.__doc__ or "").strip())
        return builder

    return decorate


def available_augmentations() -> list[str]:
    """Names `dataset.augment` may use, sorted."""
    _load_policies()
    return sorted(_REGISTRY)


def get_spec(name: str) -> AugmentSpec:
    """The registered augmentation called `name`, or a ConfigError that suggests the closest name."""
    if name not in _REGISTRY:
        _load_policies()
    if name not in _REGISTRY:
        raise ConfigError(f"{KEY}: unknown augmentation '{name}'{did_you_mean(name, _REGISTRY)}; "
                          f"available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


@dataclass(frozen=True)
class Augment:
    """A run's augmentation: image ops in config order, then mixup/cutmix (one of them per batch)."""

    ops: tuple[Any, ...] = ()
    mixing: tuple[Any, ...] = ()
    num_classes: int = 0
    names: tuple[str, ...] = field(default=(), compare=False)

    @property
    def enabled(self) -> bool:
        return bool(self.ops or self.mixing)

    @property
    def mixes(self) -> bool:
        return bool(self.mixing)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                 batch: int | None = None, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented images, targets) for rows first.. of a global batch of `batch` images (default: these
        images alone). Targets are the labels, or class probabilities [N, classes] when the policy mixes."""
        rows = slice(first, first + images.shape[0])
        drawn = images.shape[0] if batch is None else batch
        for op in self.ops:
            images = op(images, generator, drawn, rows)
        if not self.mixing:
            return images, labels
        chosen = self.mixing[0]
        if len(self.mixing) > 1:
            chosen = self.mixing[int(torch.rand(1, generator=generator) < 0.5)]
        targets = labels if labels.ndim == 2 else F.one_hot(labels, self.num_classes).float()  # label sets: as they are
        return chosen(images, targets, generator, drawn, rows)


def build_augment(value: Any, num_classes: int = 0, input_shape: Sequence[int] | None = None) -> Augment:
    """The Augment of a `dataset.augment` value (a list, the old mapping form, or null), every argument checked,
    and against the images' [channels, height, width] when given."""
    ops, mixing, names = [], [], []
    for name, kwargs in augment_items(value):
        op = get_spec(name).builder(**kwargs)
        if input_shape is not None and hasattr(op, "check_shape"):
            op.check_shape(tuple(input_shape))
        (mixing if name in MIXING else ops).append(op)
        names.append(name)
    return Augment(tuple(ops), tuple(mixing), num_classes, tuple(names))


def check_augment(value: Any, input_shape: Sequence[int]) -> None:
    """Every augmentation's arguments, and each against the images' size (a crop's padding, a shift)."""
    build_augment(value, 0, input_shape)


def mixes(value: Any) -> bool:
    """Whether a `dataset.augment` value has mixup or cutmix (their soft targets need the cross_entropy loss)."""
    return any(name in MIXING for name, _ in augment_items(value))


def dominant_class(targets: torch.Tensor) -> torch.Tensor:
    """Class indices as they are, or the largest share of each mixed (soft) target: train accuracy counts a
    prediction right when it names the class that makes up most of the image."""
    return targets if targets.ndim == 1 else targets.argmax(dim=1)


def augment_items(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """`dataset.augment` as (name, keyword arguments) in order: a list of names, {name: value} or
    {name: {argument: value}}; the old mapping {translate: N, hflip: bool}; or null (none)."""
    if value is None:
        return []
    if hasattr(value, "_metadata"):  # an OmegaConf node (a composed or saved config)
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return _old_form(value)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{KEY}={value}: expected a list of augmentations (e.g. [hflip, {{translate: 2}}])")
    return [_item(raw) for raw in value]


def _old_form(value: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    for key in value:
        if key not in OLD_FORM_KEYS:
            raise ConfigError(f"{KEY}.{key}: unknown key{did_you_mean(str(key), OLD_FORM_KEYS)}; the mapping form "
                              f"takes translate and hflip; for more, give a list of augmentations")
    translate, hflip = value.get("translate", 0), value.get("hflip", False)
    if not isinstance(hflip, bool):
        raise ConfigError(f"{KEY}.hflip={hflip}: expected true or false")
    items = [("translate", {"pixels": translate})] if translate != 0 else []
    return items + ([("hflip", {})] if hflip else [])


def _item(raw: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(raw, str):
        name, given = raw, None
    elif isinstance(raw, Mapping) and len(raw) == 1:
        name, given = next(iter(raw.items()))
    else:
        raise ConfigError(f"{KEY}: each item is a name or {{name: arguments}}, got {raw}")
    spec = get_spec(str(name))
    if given is None:
        return spec.name, {}
    if not isinstance(given, Mapping):
        if spec.primary is None:
            raise ConfigError(f"{KEY}.{name}={given}: takes no single value; write its arguments as a mapping")
        return spec.name, {spec.primary: given}
    allowed = list(spec.arguments)
    for key in given:
        if key not in allowed:
            raise ConfigError(f"{KEY}.{name}: unknown argument '{key}'{did_you_mean(str(key), allowed)}; "
                              f"arguments: {', '.join(allowed)}")
    return spec.name, dict(given)


def _load_policies() -> None:
    """The policy ops import torchvision: only a config that names one (or an unknown name) loads it."""
    import cnntrain.data.augment_policies  # noqa: F401  (registers randaugment, trivialaugment, autoaugment)


# ------------------------------------------------------------------------------------------- argument checks

def number(label: str, value: Any, low: float, high: float, *, whole: bool = False, open_low: bool = False) -> Any:
    """`value` if it is a number (a whole one when asked) in [low, high] ((low, high] with open_low), else a
    ConfigError naming `dataset.augment.<label>`."""
    kind = "a whole number" if whole else "a number"
    ok_type = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{KEY}.{label}={value}: expected {kind}")
    if (value <= low if open_low else value < low) or value > high:
        left = "(" if open_low else "["
        bound = f"> {low}" if open_low else f">= {low}"
        span = bound if high == math.inf else f"in {left}{low}, {high}]"
        raise ConfigError(f"{KEY}.{label}={value}: must be {span}")
    return value


def number_range(label: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A [min, max] pair of numbers within [low, high], min <= max."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{KEY}.{label}={value}: expected [min, max]")
    a, b = (number(label, v, low, high) for v in value)
    if a > b:
        raise ConfigError(f"{KEY}.{label}=[{a}, {b}]: min must be <= max")
    return float(a), float(b)


# ------------------------------------------------------------------------------------------- image ops

@dataclass(frozen=True)
class Translate:
    pixels: int
    label: str = "translate"

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """A shift must leave part of the image in view: pixels < the image's height and width."""
        height, width = input_shape[1:]
        if self.pixels >= min(height, width):
            raise ConfigError(f"{KEY}.{self.label}={self.pixels}: must be smaller than the images' {height}x{width} "
                              f"pixels (a shift that large leaves nothing of the image)")

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
def random_resized_crop_op(scale: Sequence[float] = (0.08, 1.0),
                           ratio: Sequence[float] = (3 / 4, 4 / 3)) -> ResizedCrop:
    """Crop a random area fraction `scale` of aspect `ratio` and resize it back to the image's size (bilinear)."""
    return ResizedCrop(number_range("random_resized_crop.scale", scale, 0, 1),
                       number_range("random_resized_crop.ratio", ratio, 0, math.inf))


@dataclass(frozen=True)
class Erasing:
    p: float
    scale: tuple[float, float]
    ratio: tuple[float, float]
    value: int

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        return random_erasing(images, self.p, self.scale, self.ratio, self.value, generator, drawn, rows)


@register("random_erasing", primary="p")
def random_erasing_op(p: float = 0.5, scale: Sequence[float] = (0.02, 0.33), ratio: Sequence[float] = (0.3, 3.3),
                      value: int = 0) -> Erasing:
    """With probability p, fill a random rectangle (area fraction `scale`, aspect `ratio`) with pixel `value`."""
    return Erasing(number("random_erasing.p", p, 0, 1), number_range("random_erasing.scale", scale, 0, 1),
                   number_range("random_erasing.ratio", ratio, 0, math.inf),
                   number("random_erasing.value", value, 0, 255, whole=True))


@register("mixup", primary="alpha")
def mixup_op(alpha: float = 1.0) -> Mixing:
    """Blend each image with another: lam*image + (1-lam)*other, targets likewise; lam ~ Beta(alpha, alpha)."""
    return Mixing("mixup", number("mixup.alpha", alpha, 0, math.inf, open_low=True))


@register("cutmix", primary="alpha")
def cutmix_op(alpha: float = 1.0) -> Mixing:
    """Paste a random box of another image; targets weighted by the areas; box area 1-lam, lam ~ Beta(alpha, alpha)."""
    return Mixing("cutmix", number("cutmix.alpha", alpha, 0, math.inf, open_low=True))


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
                 rows: slice = slice(None), p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(drawn or images.shape[0], generator=generator)[rows] < p).to(images.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_resized_crop(images: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                        generator: torch.Generator, drawn: int | None = None,
                        rows: slice = slice(None)) -> torch.Tensor:
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


def random_erasing(images: torch.Tensor, p: float, scale: tuple[float, float], ratio: tuple[float, float],
                   value: int, generator: torch.Generator, drawn: int | None = None,
                   rows: slice = slice(None)) -> torch.Tensor:
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
