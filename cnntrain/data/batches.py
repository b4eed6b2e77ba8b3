"""Batches of a split: index slices of the device tensors, or DataLoader workers for streamed image folders.

The order comes from a CPU generator, so a run is reproducible and resumable on any device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnntrain.data.image_folder import FileDataset, LazyImages


def iterate_batches(
    split: TensorSplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) slices of the device tensors; order drawn from a CPU `generator`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if isinstance(split.images, LazyImages):
        yield from _streamed_batches(split, batch_size, shuffle, generator, drop_last)
        return
    order = torch.randperm(n, generator=generator).to(split.labels.device) if shuffle else None
    for b in range(num_batches(n, batch_size, drop_last)):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        if order is None:
            yield split.images[lo:hi], split.labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.images[idx], split.labels[idx]


def _streamed_batches(split: TensorSplit, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                      drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same batches, in the same order, as the in-memory path, but decoded by DataLoader workers."""
    from torch.utils.data import DataLoader

    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    count = num_batches(n, batch_size, drop_last)
    batches = [order[b * batch_size:(b + 1) * batch_size].tolist() for b in range(count)]
    device = split.labels.device
    loader = DataLoader(FileDataset(split.images, split.labels), batch_sampler=batches,
                        num_workers=split.images.num_workers, pin_memory=device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch, matching iterate_batches."""
    return n // batch_size if drop_last else -(-n // batch_size)
