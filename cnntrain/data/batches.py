"""An epoch's order and the arithmetic of its batches, whatever holds the images.

The order comes from a CPU generator, so a run is reproducible and resumable on any device: a permutation
per epoch, or with the balanced sampler as many draws with replacement, each class equally likely. In a
data-parallel run every rank draws the same permutation and takes its contiguous share of each global
batch (`rank`, `world`); a last batch too small to give every rank an image is left out of that epoch.
The batches themselves come from the split's images (cnntrain.data.containers.iterate_batches).
"""

from __future__ import annotations

import torch

from cnntrain.config.names import BALANCED
from cnntrain.data.balance import balanced_draws


def epoch_order(labels: torch.Tensor, sampler: str, generator: torch.Generator | None) -> torch.Tensor:
    """An epoch's len(labels) indices, on the CPU: a permutation (shuffle), or draws with replacement that give
    every class the same chance (balanced). Every rank draws the same from the same generator state."""
    if sampler == BALANCED:
        return balanced_draws(labels, generator)
    return torch.randperm(len(labels), generator=generator)


def batch_share(size: int, rank: int, world: int) -> tuple[int, int]:
    """[first, last) of a rank's contiguous share of a global batch of `size` images."""
    return size * rank // world, size * (rank + 1) // world


def global_batch_size(n: int, batch_size: int, step: int) -> int:
    """Images in the global batch number `step` (from 1) of an epoch over n images."""
    return min(batch_size, n - (step - 1) * batch_size)


def num_batches(n: int, batch_size: int, drop_last: bool, world: int = 1) -> int:
    """Batches per epoch, matching iterate_batches: a last, partial batch counts unless it is dropped or has
    fewer images than there are ranks."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and not drop_last and rest >= world else 0)
