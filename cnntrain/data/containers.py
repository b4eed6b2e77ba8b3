"""A split's images and labels, whatever holds the images: the one interface every image container answers.

A split's images are held one of four ways: uint8 tensors in memory (InMemoryImages), image files decoded per
batch (cnntrain.data.lazy_images.LazyImages), rows of a Hugging Face dataset decoded per batch
(cnntrain.data.sources.huggingface_images.ArrowImages), or tar shards streamed (cnntrain.data.streams
.StreamedImages). Each answers the same few questions (ImageContainer), so nothing that holds a split asks which
kind it has: its length and shape, the images at some indices (`take`), two joined (`concat`), a rank's share
for evaluation (`share`), an epoch's batches (`batches`), a few images read out (`at`), the images the channel
statistics are taken from (`statistics_images`), and whether it is split by index or by key (`keyed`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from cnntrain.data.batches import batch_share, epoch_order, num_batches

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SourceSplit:
    """One split as a source gives it: images (an ImageContainer; a uint8 [N, C, H, W] tensor is wrapped in
    InMemoryImages; None when only labels were asked for) and int64 labels [N] (multi-label data: multi-hot
    labels [N, K], 0/1)."""

    images: ImageContainer | torch.Tensor | None
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images is not None:
            self.images = as_container(self.images)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: torch.Tensor) -> Any:
        """The split's samples at these indices (labels alone when it has no images)."""
        if self.images is None:
            return type(self)(None, self.labels[indices])
        return type(self)(*self.images.take(self.labels, indices))

    def concat(self, other: SourceSplit) -> Any:
        """This split's samples, then the other's."""
        labels = torch.cat([self.labels, other.labels])
        if self.images is None or other.images is None:
            return type(self)(None, labels)
        return type(self)(self.images.concat(other.images), labels)


@dataclass
class TensorSplit(SourceSplit):
    """One split ready to train or test on: images as an ImageContainer (uint8 [N, C, H, W] when read), labels
    int64 [N] on the training device (multi-label data: float32 multi-hot [N, K])."""

    images: ImageContainer


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
) -> Batches:
    """Yield (uint8 images, labels) batches of a split; order drawn from a CPU `generator` (how, when shuffling:
    `sampler`, see cnntrain.data.batches.epoch_order).

    With world > 1, each batch is this rank's share of the global batch (see batch_share). `start` skips the
    epoch's first batches (a resume inside an epoch): the order is drawn as for the whole epoch; tensors and
    image files skip them unread, a stream of shards reads and drops them (its position cannot be sought)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    yield from split.images.batches(
        split.labels,
        batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        rank=rank,
        world=world,
        sampler=sampler,
        start=start,
    )


def shard(split: TensorSplit, rank: int, world: int) -> TensorSplit:
    """A rank's share of a split, for evaluation: the shares cover the split once, unpadded."""
    if world == 1:
        return split
    return type(split)(*split.images.share(split.labels, rank, world))


def images_at(images: ImageContainer | torch.Tensor, indices: list[int]) -> torch.Tensor:
    """uint8 [len(indices), C, H, W] on the CPU: the split's images at these indices, whatever holds them (a
    stream reads them in one pass, image files decode just these)."""
    if not indices:
        return torch.zeros(0, *images.shape[1:], dtype=torch.uint8)
    return as_container(images).at(indices)


def as_container(images: ImageContainer | torch.Tensor) -> ImageContainer:
    """Images as a container: a uint8 tensor is wrapped (InMemoryImages), a container is taken as it is."""
    return InMemoryImages(images) if isinstance(images, torch.Tensor) else images


class ImageContainer(ABC):
    """What holds a split's images (uint8 [N, C, H, W] when read) and the questions every holder answers."""

    dtype = torch.uint8  # what reading the images gives, whoever holds them

    keyed = False
    """True for a stream: it cannot be indexed, so held-out splits are taken from it by a hash of each key."""

    @property
    @abstractmethod
    def shape(self) -> torch.Size:
        """[N, C, H, W], as the tensor of every image would have it."""

    def __len__(self) -> int:
        return int(self.shape[0])

    @abstractmethod
    def __getitem__(self, key: int | slice) -> torch.Tensor:
        """The image at an index, or the images of a slice, read (and decoded) now."""

    @abstractmethod
    def to(self, device: Any) -> ImageContainer:
        """The same images on `device` (a container that reads per batch moves each batch as it is read)."""

    @abstractmethod
    def take(self, labels: torch.Tensor, indices: torch.Tensor) -> tuple[ImageContainer, torch.Tensor]:
        """(images, labels) of the samples at these indices, selected without reading an image."""

    @abstractmethod
    def concat(self, other: Any) -> ImageContainer:
        """These images, then the other's (a container of the same kind)."""

    @abstractmethod
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
        """An epoch's batches, as cnntrain.data.containers.iterate_batches describes them."""

    def share(self, labels: torch.Tensor, rank: int, world: int) -> tuple[ImageContainer, torch.Tensor]:
        """(images, labels) of a rank's contiguous share, for evaluation."""
        lo, hi = batch_share(len(labels), rank, world)
        return self.take(labels, torch.arange(lo, hi))

    def at(self, indices: list[int]) -> torch.Tensor:
        """The images at these indices, read now, stacked on the CPU."""
        return torch.stack([self[i].cpu() for i in indices])

    def statistics_images(self) -> Any:
        """What the channel statistics are computed from: the images themselves (sliced in chunks)."""
        return self


class InMemoryImages(ImageContainer):
    """A uint8 [N, C, H, W] tensor on the training device; batches are index slices of it."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    @property
    def shape(self) -> torch.Size:
        return self.tensor.shape

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        return self.tensor[key]

    def to(self, device: Any) -> InMemoryImages:
        return InMemoryImages(self.tensor.to(device))

    def take(self, labels: torch.Tensor, indices: torch.Tensor) -> tuple[InMemoryImages, torch.Tensor]:
        return InMemoryImages(self.tensor[indices]), labels[indices]

    def concat(self, other: InMemoryImages) -> InMemoryImages:
        return InMemoryImages(torch.cat([self.tensor, other.tensor]))

    def share(self, labels: torch.Tensor, rank: int, world: int) -> tuple[InMemoryImages, torch.Tensor]:
        lo, hi = batch_share(len(labels), rank, world)
        return InMemoryImages(self.tensor[lo:hi]), labels[lo:hi]

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
        n = len(labels)
        order = epoch_order(labels, sampler, generator).to(labels.device) if shuffle else None
        for b in range(start, num_batches(n, batch_size, drop_last, world)):
            lo, hi = b * batch_size, min((b + 1) * batch_size, n)
            first, last = batch_share(hi - lo, rank, world)
            lo, hi = lo + first, lo + last
            if order is None:
                yield self.tensor[lo:hi], labels[lo:hi]
            else:
                idx = order[lo:hi]
                yield self.tensor[idx], labels[idx]

    def statistics_images(self) -> torch.Tensor:
        return self.tensor
