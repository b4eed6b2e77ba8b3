"""Image files decoded per batch by DataLoader workers (dataset.in_memory=false), for data too large for memory.

Decoding every file first would cost the pass this avoids, so the files are only opened (Pillow reads the
header: the format, the size): files that are not images, empty or cut off before the header fail there
(unreadable_headers). A file whose header reads but whose pixels do not (cut off mid-data) still stops the run
when a batch reaches it, naming it.

A batch is one DataLoader item: a worker reads and decodes its files together (cnntrain.data.batch_decode: the
JPEGs at the input size as one decode_jpeg list, the rest by Pillow, the pixels decode_image gives) and hands
over one uint8 tensor, not one tensor per image for the collate step to copy; with dataset.decode_device=cuda
the worker hands over the JPEGs' bytes and this process decodes them on the GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cnntrain.data.batch_decode import Plan, finish, header_reads, plan_batch, warm
from cnntrain.data.batches import batch_share, epoch_order, num_batches
from cnntrain.data.containers import Batches, ImageContainer
from cnntrain.data.images import decode_image, open_image
from cnntrain.errors import DataError


class LazyImages(ImageContainer):
    """Image files standing in for a uint8 [N, C, H, W] tensor, decoded only when read.

    `take` selects files (no decoding), as the train/val/test split does; an int or a slice decodes those
    images; an epoch's batches are decoded by DataLoader workers. `to(device)` is a no-op: batches move when
    they are read.
    """

    def __init__(
        self,
        files: list[Path],
        input_shape: tuple[int, int, int],
        num_workers: int = 0,
        *,
        resize: str = "stretch",
        decode_device: str = "cpu",
    ) -> None:
        self.files = files
        self.input_shape = input_shape
        self.num_workers = num_workers
        self.resize = resize
        self.decode_device = decode_device

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.input_shape))

    def to(self, device: Any) -> LazyImages:
        return self

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        if isinstance(key, slice):
            return torch.stack([self.decode(i) for i in range(*key.indices(len(self)))])
        return self.decode(int(key))

    def decode(self, index: int) -> torch.Tensor:
        return decode_image(self.files[index], *self.input_shape, resize=self.resize)

    def take(self, labels: torch.Tensor, indices: torch.Tensor) -> tuple[LazyImages, torch.Tensor]:
        return self._with([self.files[i] for i in indices.tolist()]), labels[indices]

    def concat(self, other: LazyImages) -> LazyImages:
        return self._with(self.files + other.files)

    def batches(
        self,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool,
        rank: int,
        world: int,
        sampler: str,
        start: int,
    ) -> Batches:
        """The same batches, in the same order, as InMemoryImages gives, but decoded by DataLoader workers."""
        n = len(labels)
        order = epoch_order(labels, sampler, generator) if shuffle else torch.arange(n)
        count = num_batches(n, batch_size, drop_last, world)
        batches = []
        for b in range(start, count):
            chunk = order[b * batch_size : (b + 1) * batch_size]
            first, last = batch_share(len(chunk), rank, world)
            batches.append(chunk[first:last].tolist())
        device = labels.device
        warm()
        on_gpu = self.decode_device == "cuda"
        loader = DataLoader(
            BatchFiles(self, labels, plan_only=on_gpu),
            sampler=batches,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda" and not on_gpu,
        )
        for images, batch_labels in loader:
            if on_gpu:  # a Plan: the JPEGs are decoded here, on the GPU
                images = finish(images, self.input_shape, self.resize, self.decode_device)[0]
            yield images.to(device, non_blocking=True), batch_labels.to(device, non_blocking=True)

    def _with(self, files: list[Any]) -> LazyImages:
        return LazyImages(
            files, self.input_shape, self.num_workers, resize=self.resize, decode_device=self.decode_device
        )


class BatchFiles(Dataset):
    """A whole batch per DataLoader item (the index is the batch's list of positions): its images as one uint8
    tensor, decoded in the worker (or, plan_only, a batch_decode.Plan for the GPU to finish) and its labels."""

    def __init__(self, images: LazyImages, labels: torch.Tensor, plan_only: bool = False) -> None:
        self.images = images
        self.labels = labels.cpu()
        self.plan_only = plan_only

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]) -> tuple[Any, torch.Tensor]:
        shape, resize = self.images.input_shape, self.images.resize
        if type(self.images).decode is not LazyImages.decode:  # rows, not files (ArrowImages): one by one
            plan = Plan(torch.stack([self.images.decode(i) for i in indices]))
        else:
            files = [self.images.files[i] for i in indices]
            plan = plan_batch([(str(path), path) for path in files], shape, resize)
        return (plan if self.plan_only else finish(plan, shape, resize)[0]), self.labels[indices]


def unreadable_headers(paths: list[Path]) -> list[tuple[int, str]]:
    """(index, reason) of the files Pillow cannot even open (the header: format and size), without decoding; a
    JPEG whose frame header a marker walk finds needs no Pillow object (batch_decode.header_reads)."""
    bad = []
    for i, path in enumerate(paths):
        if header_reads(path):
            continue
        try:
            with open_image(path):
                pass
        except DataError as err:
            bad.append((i, str(err)))
    return bad
