"""Batches of a split: index slices of the device tensors, or DataLoader workers for streamed image folders.

The order comes from a CPU generator, so a run is reproducible and resumable on any device: a permutation
per epoch, or with the balanced sampler as many draws with replacement, each class equally likely. In a
data-parallel run every rank draws the same permutation and takes its contiguous share of each global
batch (`rank`, `world`); a last batch too small to give every rank an image is left out of that epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from cnntrain.config.names import BALANCED
from cnntrain.data.balance import balanced_draws
from cnntrain.data.image_files import FileDataset, LazyImages
from cnntrain.data.streams import StreamedImages

if TYPE_CHECKING:
    from cnntrain.data.loading import TensorSplit


def iterate_batches(
    split: TensorSplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world: int = 1,
    sampler: str = "shuffle",
    start: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) slices of the device tensors; order drawn from a CPU `generator`
    (how, when shuffling: `sampler`, see epoch_order).

    With world > 1, each batch is this rank's share of the global batch (see batch_share). `start` skips the
    epoch's first batches (a resume inside an epoch): the order is drawn as for the whole epoch; tensors and
    image files skip them unread, a stream of shards reads and drops them (its position cannot be sought)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if isinstance(split.images, StreamedImages):
        batches = split.images.batches(batch_size, shuffle, generator, drop_last, rank, world, sampler)
        yield from itertools.islice(batches, start, None)
        return
    if isinstance(split.images, LazyImages):
        yield from _streamed_batches(split, batch_size, shuffle, generator, drop_last, rank, world, sampler, start)
        return
    order = epoch_order(split.labels, sampler, generator).to(split.labels.device) if shuffle else None
    for b in range(start, num_batches(n, batch_size, drop_last, world)):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        first, last = batch_share(hi - lo, rank, world)
        lo, hi = lo + first, lo + last
        if order is None:
            yield split.images[lo:hi], split.labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.images[idx], split.labels[idx]


def images_at(images: Any, indices: list[int]) -> torch.Tensor:
    """uint8 [len(indices), C, H, W] on the CPU: the split's images at these indices, whatever holds them (a
    stream reads them in one pass, image files decode just these)."""
    if not indices:
        return torch.zeros(0, *images.shape[1:], dtype=torch.uint8)
    if isinstance(images, StreamedImages):
        return images.read_many(indices).cpu()
    return torch.stack([images[i].cpu() for i in indices])


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


def shard(split: TensorSplit, rank: int, world: int) -> TensorSplit:
    """A rank's contiguous share of a split, for evaluation: the shares cover the split once, unpadded."""
    if world == 1:
        return split
    if isinstance(split.images, StreamedImages):  # a rank reads its own shards (r, r+W, ...), not a slice
        images = split.images.shard(rank, world)
        return type(split)(images, images.labels.to(split.labels.device))
    lo, hi = batch_share(len(split), rank, world)
    images = split.images[torch.arange(lo, hi)] if isinstance(split.images, LazyImages) else split.images[lo:hi]
    return type(split)(images, split.labels[lo:hi])


def _streamed_batches(split: TensorSplit, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                      drop_last: bool, rank: int, world: int,
                      sampler: str, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same batches, in the same order, as the in-memory path, but decoded by DataLoader workers."""
    from torch.utils.data import DataLoader

    n = len(split)
    order = epoch_order(split.labels, sampler, generator) if shuffle else torch.arange(n)
    count = num_batches(n, batch_size, drop_last, world)
    batches = []
    for b in range(start, count):
        chunk = order[b * batch_size:(b + 1) * batch_size]
        first, last = batch_share(len(chunk), rank, world)
        batches.append(chunk[first:last].tolist())
    device = split.labels.device
    loader = DataLoader(FileDataset(split.images, split.labels), batch_sampler=batches,
                        num_workers=split.images.num_workers, pin_memory=device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def num_batches(n: int, batch_size: int, drop_last: bool, world: int = 1) -> int:
    """Batches per epoch, matching iterate_batches: a last, partial batch counts unless it is dropped or has
    fewer images than there are ranks."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and not drop_last and rest >= world else 0)
