"""Splits that are streamed from shard files, never held whole: StreamedImages stands in for a split's image tensor.

A stream cannot be indexed, so StreamedImages answers the questions every image container answers
(cnntrain.data.containers.ImageContainer) its own way: the labels are real (counted once, in the split's
canonical order: its shards in the listed order, each shard's samples in tar order), a subset is chosen by key,
and batches are read from the shards. What a split is made of is a list of ShardParts: a shard file and which
of its samples the split takes (a seeded hash of each sample's `__key__`, so validation, test and folds can come
from the training shards).

Training (`batches`): each epoch the shards are permuted by a seed drawn from the run's shuffle generator (the
same on every rank), rank r reads shards r, r+W, ... (webdataset's split_by_node rule), each DataLoader worker
a share of those (split_by_worker), samples pass a seeded shuffle buffer, and every rank yields exactly its share
of every global batch the in-memory path would have: a rank whose shards run out reads them again, one that
has more stops early. So every rank runs the same steps, the images per step are those of one process, and with
one process (or shards that divide evenly) each sample is seen once per epoch.

Evaluation (`indexed_batches`): a rank reads its shards in order and each sample carries its canonical index;
cnntrain.training.evaluation.evaluate gathers predictions, labels and indices and puts them back in canonical order.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from cnntrain.config.names import BALANCED
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.batch_decode import Plan, finish, warm
from cnntrain.data.batches import batch_share, num_batches
from cnntrain.data.containers import Batches, ImageContainer, SourceSplit
from cnntrain.data.stream_parts import KeyRule, KeySet, ShardPart
from cnntrain.errors import DataError

CHUNK = 256  # samples a DataLoader worker sends at a time, at most (64 sent a quarter fewer images/s at 32x32)
CHUNK_BYTES = 32 << 20  # ... and about this many bytes of images, at least 16 samples (large images)


def chunk_size(input_shape: tuple[int, int, int]) -> int:
    """Samples per chunk: CHUNK, fewer for large images (each worker keeps two chunks in flight)."""
    channels, height, width = input_shape
    return max(16, min(CHUNK, CHUNK_BYTES // max(1, channels * height * width)))


STATS_IMAGES = 2048  # mean/std of a streamed training split: its first STATS_IMAGES images in canonical order


# (parts, worker settings, shuffle seed or None, with_index) -> chunks (images or a batch_decode.Plan, labels,
# indices, (name, reason) of the images left out) or an error line
Reader = Callable[..., Iterator[Any]]


@dataclass
class StreamSettings:
    """How samples are read and decoded: everything a DataLoader worker needs (picklable)."""

    reader: Reader  # cnntrain.data.sources.webdataset_shards.read_parts
    input_shape: tuple[int, int, int]
    image_keys: tuple[str, ...]
    label_key: str
    classes: tuple[str, ...]
    shuffle_buffer: int = 1000
    num_workers: int = 0
    resize: str = "stretch"  # dataset.resize, as decode_image takes it
    label_delimiter: str | None = None  # multi-label: a label entry is a set split by this (or a JSON list)
    skip_bad: bool = False  # dataset.skip_bad_images: a training pass leaves an image that does not decode out
    decode_device: str = "cpu"  # dataset.decode_device: cuda: the workers hand over JPEG bytes, decoded here


class StreamDataset(IterableDataset):
    """One pass over some shard parts, split between the DataLoader's workers (webdataset's split_by_worker)."""

    def __init__(self, parts: list[ShardPart], settings: StreamSettings, seed: int | None, with_index: bool) -> None:
        self.parts, self.settings, self.seed, self.with_index = parts, settings, seed, with_index

    def __iter__(self) -> Iterator[Any]:
        return self.settings.reader(self.parts, self.settings, self.seed, self.with_index)


class StreamedImages(ImageContainer):
    """Stands in for a split's uint8 [N, C, H, W] image tensor; reads its shard parts when batches are asked for.
    It cannot be indexed (`keyed`): a subset is chosen by its samples' keys and keeps the canonical order."""

    keyed = True

    def __init__(self, parts: list[ShardPart], settings: StreamSettings, device: Any = "cpu") -> None:
        offset, placed = 0, []
        for part in parts:
            placed.append(replace(part, offset=offset))
            offset += part.count
        self.parts, self.settings, self.device = placed, settings, torch.device(device)
        self.skipped: set[str] = set()  # images a training pass left out (skip_bad), each told once

    def __len__(self) -> int:
        return sum(part.count for part in self.parts)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.settings.input_shape))

    @property
    def labels(self) -> torch.Tensor:
        """The parts' labels in canonical order (int64, on the CPU)."""
        return torch.tensor([label for part in self.parts for label in part.labels], dtype=torch.int64)

    def to(self, device: Any) -> StreamedImages:
        moved = StreamedImages([], self.settings, device)
        moved.skipped = self.skipped
        moved.parts = self.parts
        return moved

    def where(self, rule: KeyRule) -> StreamedImages:
        """The samples of this split whose key `rule` takes (offsets renumbered)."""
        return StreamedImages([part.where(rule) for part in self.parts], self.settings, self.device)

    def take(self, labels: torch.Tensor, indices: torch.Tensor) -> tuple[StreamedImages, torch.Tensor]:
        """The samples at these canonical indices, chosen by their keys and kept in canonical order (so their
        labels are the stream's own, whatever the order of `indices`)."""
        wanted = set(indices.tolist())
        parts = [
            part.where(KeySet(frozenset(key for i, key in enumerate(part.keys) if part.offset + i in wanted)))
            for part in self.parts
        ]
        images = StreamedImages(parts, self.settings, self.device)
        return images, images.labels.to(labels.device)

    def concat(self, other: StreamedImages) -> StreamedImages:
        return StreamedImages(self.parts + other.parts, self.settings, self.device)

    def share(self, labels: torch.Tensor, rank: int, world: int) -> tuple[StreamedImages, torch.Tensor]:
        """A rank reads its own shards (r, r+W, ...), not a slice."""
        images = self.shard(rank, world)
        return images, images.labels.to(labels.device)

    def shard(self, rank: int, world: int) -> StreamedImages:
        """A rank's shards for evaluation (r, r+W, ...; offsets kept canonical)."""
        view = self.to(self.device)
        view.parts = self.parts[rank::world]
        return view

    # ---- reading
    def _chunks(self, parts: list[ShardPart], seed: int | None, with_index: bool) -> Iterator[tuple]:
        """One pass over `parts`: (images, labels, indices) chunks from the DataLoader's workers (or this process)."""
        warm()
        workers = min(self.settings.num_workers, len(parts))
        loader = DataLoader(
            StreamDataset(parts, self.settings, seed, with_index),
            batch_size=None,
            num_workers=workers,
            pin_memory=False,
        )
        iterator = iter(loader)
        try:
            for item in iterator:
                if isinstance(item, str):  # a worker's DataError, as its one line
                    raise DataError(item)
                item = decoded(item, self.settings, not with_index)
                for name, reason in item[3]:
                    if name not in self.skipped:
                        self.skipped.add(name)
                        print(
                            f"notice: {name} does not decode and is left out (dataset.skip_bad_images=true): {reason}",
                            file=sys.stderr,
                            flush=True,
                        )
                yield item[:3]
        finally:
            del iterator

    def _sized(self, sizes: list[int], passes: Callable[[int], Iterator[tuple]]) -> Iterator[tuple]:
        """Cut the chunks of pass 0, 1, ... into batches of `sizes`; a pass that runs out is followed by the next."""
        pending: list[tuple] = []
        have, round_, source, fed = 0, 0, passes(0), False
        for size in sizes:
            while have < size:
                item = next(source, None)
                if item is None:
                    if not fed:
                        raise DataError(
                            "the shards gave fewer samples than were counted; were they changed since the run started?"
                        )
                    round_, fed = round_ + 1, False
                    source = passes(round_)
                    continue
                pending.append(item)
                fed = True
                have += int(item[1].numel())
            joined = [torch.cat([chunk[i] for chunk in pending]) for i in range(3)]
            pending = [tuple(t[size:] for t in joined)] if have > size else []
            have -= size
            yield tuple(t[:size] for t in joined)

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
        """This rank's share of every global batch of an epoch, as InMemoryImages gives them (the first `start`
        batches read and dropped: a stream's position cannot be sought)."""
        return itertools.islice(
            self._epoch(batch_size, shuffle, generator, drop_last, rank, world, sampler), start, None
        )

    def _epoch(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool,
        rank: int,
        world: int,
        sampler: str,
    ) -> Batches:
        if sampler == BALANCED:
            raise DataError(
                "trainer.sampler=balanced draws with replacement, which a shard stream cannot; "
                "use trainer.class_weights=balanced"
            )
        n = len(self)
        sizes = []
        for b in range(num_batches(n, batch_size, drop_last, world)):
            first, last = batch_share(min(batch_size, n - b * batch_size), rank, world)
            sizes.append(last - first)
        parts = [part for part in self.parts if part.count]
        seed = None
        if shuffle:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
            random.Random(seed).shuffle(parts)
        mine = parts[rank::world]
        if sum(sizes) and not mine:
            raise DataError(
                f"{len(parts)} shard(s) hold this split, fewer than the {world} ranks; each rank reads "
                f"its own shards: write smaller shards (cnntrain-shards --shard-size)"
            )

        def passes(round_: int) -> Iterator[tuple]:
            return self._chunks(mine, None if seed is None else seed + 7919 * (rank + 1) + round_, False)

        for images, labels, _ in self._sized(sizes, passes):
            yield images.to(self.device), labels.to(self.device)

    def indexed_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every sample of these parts once, in order per worker: (images, labels, canonical indices)."""
        n = len(self)
        sizes = [min(batch_size, n - lo) for lo in range(0, n, batch_size)]

        def passes(round_: int) -> Iterator[tuple]:  # one pass only: a second is an error
            return self._chunks(self.parts, None, True) if round_ == 0 else iter(())

        for images, labels, index in self._sized(sizes, passes):
            yield images.to(self.device), labels.to(self.device), index.to(self.device)

    def at(self, indices: list[int]) -> torch.Tensor:
        """The images at these canonical indices (one pass in order, no workers): the misclassified grid's."""
        wanted = [int(i) for i in indices]
        found: dict[int, torch.Tensor] = {}
        single = StreamSettings(**{**self.settings.__dict__, "num_workers": 0})
        last = max(wanted, default=-1)
        for item in self.settings.reader(self.parts, single, None, True):
            images, _, index, _ = decoded(item, single, False)
            for image, i in zip(images, index.tolist()):
                if i in wanted:
                    found[i] = image
            if int(index[-1]) >= last:
                break
        return torch.stack([found[i] for i in wanted])

    def statistics_images(self) -> torch.Tensor:
        """Its first STATS_IMAGES images, not all of it (a stream is read, not held)."""
        return self.first(STATS_IMAGES)

    def first(self, count: int) -> torch.Tensor:
        """The first `count` images in canonical order (one process), for the channel statistics."""
        got, total = [], 0
        single = StreamSettings(**{**self.settings.__dict__, "num_workers": 0})
        for item in self.settings.reader(self.parts, single, None, True):
            images = decoded(item, single, False)[0]
            got.append(images)
            total += len(images)
            if total >= count:
                break
        return torch.cat(got)[:count] if got else torch.zeros((0, *self.settings.input_shape), dtype=torch.uint8)

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        if isinstance(key, int):
            return self.at([key])[0]
        raise TypeError("a streamed split cannot be indexed; read it with cnntrain.data.containers.iterate_batches")


def decoded(item: Any, settings: StreamSettings, training: bool) -> tuple:
    """A reader's chunk with its images decoded: a worker's error line raised, a Plan (decode_device=cuda)
    finished on the GPU."""
    if isinstance(item, str):
        raise DataError(item)
    if not isinstance(item[0], Plan):
        return item
    plan, labels, indices, _ = item
    skip = settings.skip_bad and training
    images, keep, skipped = finish(plan, settings.input_shape, settings.resize, settings.decode_device, skip_bad=skip)
    return images, labels[keep], indices[keep], skipped


def split_streams(cfg: DatasetConfig, train: Any, val: Any, test: Any, seed: int) -> tuple[Any, Any, Any]:
    """cnntrain.data.loading.assemble for streamed splits (SourceSplits of StreamedImages): what the shards lack
    is taken from train by a seeded hash of each sample's key, never by index. The test split is the keys whose
    hash (salt "test", not the run seed: it must not move when the seed changes) falls below dataset.test_split;
    validation is dataset.val_split of the rest (salted with the run seed), or with dataset.folds=K the keys
    whose hash % K is dataset.fold (validation shards then join train first, as for every source)."""

    def part(split: Any, rule: KeyRule) -> Any:
        images = split.images.where(rule)
        return SourceSplit(images, images.labels)

    if test is None:
        rule = KeyRule("test", share=float(cfg.test_split))
        train, test = part(train, replace(rule, keep=False)), part(train, rule)
    if val is not None and cfg.folds is not None:
        images = train.images.concat(val.images)
        train, val = SourceSplit(images, images.labels), None
    if val is None:
        if cfg.folds is not None:
            rule = KeyRule(f"fold:{seed}", buckets=int(cfg.folds), bucket=int(cfg.fold))
        else:
            rule = KeyRule(f"val:{seed}", share=float(cfg.val_split))
        train, val = part(train, replace(rule, keep=False)), part(train, rule)
    for name, split in (("train", train), ("validation", val), ("test", test)):
        if len(split.labels) == 0:
            raise DataError(f"the {name} split of the shards is empty; give it shards of its own or more samples")
    return train, val, test
