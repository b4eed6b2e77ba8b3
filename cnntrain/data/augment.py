"""Per-batch augmentation on the training device, on uint8 images: the policy (Augment) built from
`dataset.augment`, an ordered list in the "name or {name: arguments}" format model layers use
(cnntrain.config.named_items); the names are registered in cnntrain.data.augment_registry by the modules that
define the ops (augment_ops.py, augment_policies.py).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cnntrain.config.named_items import named_item
from cnntrain.data import augment_ops  # noqa: F401  (registers the built-in ops)
from cnntrain.data.augment_registry import KEY, AugmentSpec, registered, registered_names
from cnntrain.errors import ConfigError, did_you_mean

OLD_FORM_KEYS = ("translate", "hflip")
MIXING = ("mixup", "cutmix")


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

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        batch: int | None = None,
        first: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return _old_form(value)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{KEY}={value}: expected a list of augmentations (e.g. [hflip, {{translate: 2}}])")
    return [_item(raw) for raw in value]


def _old_form(value: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    for key in value:
        if key not in OLD_FORM_KEYS:
            raise ConfigError(
                f"{KEY}.{key}: unknown key{did_you_mean(str(key), OLD_FORM_KEYS)}; the mapping form "
                f"takes translate and hflip; for more, give a list of augmentations"
            )
    translate, hflip = value.get("translate", 0), value.get("hflip", False)
    if not isinstance(hflip, bool):
        raise ConfigError(f"{KEY}.hflip={hflip}: expected true or false")
    items = [("translate", {"pixels": translate})] if translate != 0 else []
    return items + ([("hflip", {})] if hflip else [])


def _item(raw: Any) -> tuple[str, dict[str, Any]]:
    parsed = named_item(raw)
    if parsed is None:
        raise ConfigError(f"{KEY}: each item is a name or {{name: arguments}}, got {raw}")
    name, given = parsed
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
            raise ConfigError(
                f"{KEY}.{name}: unknown argument '{key}'{did_you_mean(str(key), allowed)}; "
                f"arguments: {', '.join(allowed)}"
            )
    return spec.name, dict(given)


def get_spec(name: str) -> AugmentSpec:
    """The registered augmentation called `name`, or a ConfigError that suggests the closest name."""
    spec = registered(name)
    if spec is None:
        _load_policies()
        spec = registered(name)
    if spec is None:
        names = registered_names()
        raise ConfigError(
            f"{KEY}: unknown augmentation '{name}'{did_you_mean(name, names)}; available: {', '.join(names)}"
        )
    return spec


def _load_policies() -> None:
    """The policy ops import torchvision: only a config that names one (or an unknown name) loads it."""
    import cnntrain.data.augment_policies  # noqa: F401  (registers randaugment, trivialaugment, autoaugment)
