"""The learned and random augmentation policies (RandAugment, TrivialAugmentWide, AutoAugment) with per-image
randomness, on a batch of uint8 images on the device.

torchvision v2's policy transforms draw one op and magnitude for the whole batch they are given. Here each image
draws its own (from the run's generator, for the whole global batch: see cnntrain.data.augment), and then v2's
own op code (`_apply_image_or_video_transform`, with the op's name and magnitude given, so it draws nothing) runs
once per group of images that drew the same op and magnitude. A batch of 128 makes at most 2 x 14 groups per
RandAugment op, so a few dozen calls per batch instead of one per image; the images are exactly v2's.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from cnntrain.data.augment_registry import KEY, number, register
from cnntrain.errors import ConfigError

AUTOAUGMENT_POLICIES = {
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}


class Policy:
    """One policy transform of v2, applied per image: `steps` draws each image's (op index, magnitude) steps."""

    def __init__(self, transform: v2.Transform) -> None:
        self.transform = transform
        self.space = transform._AUGMENTATION_SPACE
        self.op_names = list(self.space)

    def __call__(self, images: torch.Tensor, generator: torch.Generator, drawn: int, rows: slice) -> torch.Tensor:
        height, width = images.shape[-2:]
        for op, magnitude in self.steps(generator, drawn, height, width):
            images = self._apply(images, op[rows], magnitude[rows])
        return images

    def steps(
        self, generator: torch.Generator, drawn: int, height: int, width: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def magnitudes(
        self, op: torch.Tensor, bins: int, index: torch.Tensor, sign: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """Each image's magnitude: bin `index` of its op's magnitudes over `bins` bins, negated where `sign` says
        and the op is signed (0 for ops without a magnitude)."""
        table = torch.zeros(len(self.op_names), bins, dtype=torch.float64)
        signed = torch.zeros(len(self.op_names), dtype=torch.bool)
        for i, name in enumerate(self.op_names):
            values, is_signed = self.space[name]
            values = values(bins, height, width)
            if values is not None:
                table[i] = values.double()
                signed[i] = is_signed
        magnitude = table[op, index]
        return torch.where(signed[op] & sign, -magnitude, magnitude)

    def _apply(self, images: torch.Tensor, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """Run v2's op once per group of images with the same (op, magnitude); op -1 leaves an image alone."""
        out = images
        keys = torch.stack([op.double(), magnitude], dim=1)
        groups, which = torch.unique(keys, dim=0, return_inverse=True)
        for g, (op_index, value) in enumerate(groups.tolist()):
            name = self.op_names[int(op_index)] if op_index >= 0 else "Identity"
            if name == "Identity":
                continue
            index = (which == g).nonzero()[:, 0].to(images.device, non_blocking=True)
            if out is images:
                out = images.clone()
            out[index] = self.transform._apply_image_or_video_transform(
                images[index], name, value, interpolation=self.transform.interpolation, fill=self.transform._fill
            )
        return out


class RandAugment(Policy):
    def __init__(self, num_ops: int, magnitude: int, num_magnitude_bins: int) -> None:
        super().__init__(v2.RandAugment(num_ops, magnitude, num_magnitude_bins))
        self.num_ops, self.magnitude, self.bins = num_ops, magnitude, num_magnitude_bins

    def steps(
        self, generator: torch.Generator, drawn: int, height: int, width: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """num_ops steps, each image its own op and sign; the magnitude bin is the configured one."""
        out = []
        for _ in range(self.num_ops):
            op = torch.randint(len(self.op_names), (drawn,), generator=generator)
            sign = torch.rand(drawn, generator=generator) < 0.5
            index = torch.full((drawn,), self.magnitude)
            out.append((op, self.magnitudes(op, self.bins, index, sign, height, width)))
        return out


class TrivialAugment(Policy):
    def __init__(self, num_magnitude_bins: int) -> None:
        super().__init__(v2.TrivialAugmentWide(num_magnitude_bins))
        self.bins = num_magnitude_bins

    def steps(
        self, generator: torch.Generator, drawn: int, height: int, width: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One op per image, its own op, magnitude bin and sign."""
        op = torch.randint(len(self.op_names), (drawn,), generator=generator)
        index = torch.randint(self.bins, (drawn,), generator=generator)
        sign = torch.rand(drawn, generator=generator) < 0.5
        return [(op, self.magnitudes(op, self.bins, index, sign, height, width))]


class AutoAugment(Policy):
    def __init__(self, policy: str) -> None:
        super().__init__(v2.AutoAugment(AUTOAUGMENT_POLICIES[policy]))
        policies = self.transform._policies
        self.table = [[(self.op_names.index(name), p, level or 0) for name, p, level in sub] for sub in policies]

    def steps(
        self, generator: torch.Generator, drawn: int, height: int, width: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each image its own sub-policy of two (op, probability, level) steps, each applied with its probability."""
        chosen = torch.randint(len(self.table), (drawn,), generator=generator)
        out = []
        for step in range(2):
            rows = torch.tensor([[sub[step][0], sub[step][1], sub[step][2]] for sub in self.table], dtype=torch.float64)
            op, p, level = rows[chosen].unbind(1)
            applied = torch.rand(drawn, generator=generator, dtype=torch.float64) <= p
            sign = torch.rand(drawn, generator=generator) <= 0.5
            magnitude = self.magnitudes(op.long(), 10, level.long(), sign, height, width)
            out.append((torch.where(applied, op.long(), -1), magnitude * applied))
        return out


@register("randaugment", primary="num_ops")
def randaugment(num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31) -> RandAugment:
    """RandAugment: num_ops random ops per image (of 14) at one magnitude (0..num_magnitude_bins-1)."""
    number("randaugment.num_ops", num_ops, 1, 20, whole=True)
    number("randaugment.num_magnitude_bins", num_magnitude_bins, 2, 1000, whole=True)
    _magnitude("randaugment", magnitude, num_magnitude_bins)
    return RandAugment(num_ops, magnitude, num_magnitude_bins)


@register("trivialaugment", primary="num_magnitude_bins")
def trivialaugment(num_magnitude_bins: int = 31) -> TrivialAugment:
    """TrivialAugmentWide: one random op per image at a random magnitude."""
    return TrivialAugment(number("trivialaugment.num_magnitude_bins", num_magnitude_bins, 2, 1000, whole=True))


@register("autoaugment", primary="policy")
def autoaugment(policy: str = "imagenet") -> AutoAugment:
    """AutoAugment's learned policy (imagenet, cifar10 or svhn): a random sub-policy of two ops per image."""
    if policy not in AUTOAUGMENT_POLICIES:
        raise ConfigError(f"{KEY}.autoaugment.policy={policy}: expected one of {', '.join(AUTOAUGMENT_POLICIES)}")
    return AutoAugment(policy)


def _magnitude(name: str, magnitude: object, bins: int) -> None:
    if isinstance(magnitude, bool) or not isinstance(magnitude, int) or not 0 <= magnitude < bins:
        raise ConfigError(
            f"{KEY}.{name}.magnitude={magnitude}: must be a whole number in 0..{bins - 1} (num_magnitude_bins - 1)"
        )
