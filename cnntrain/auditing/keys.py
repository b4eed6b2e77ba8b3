"""Each image's stable key (its file's path, or `split/index` for a dataset without files) carried through the
very assembly a fold run made of its data (cnntrain.data.loading.assemble), so every out-of-fold prediction is
tied to the image it is for.

The keys ride in a stand-in image container (KeyList): assemble only takes and joins samples by their labels,
so the keys of fold i's validation split are exactly the images fold i's run validated on, in that order. A
streamed source (WebDataset shards) cannot be indexed and is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import ImageContainer, SourceSplit
from cnntrain.data.loading import assemble
from cnntrain.data.sources import Source, SourceSplits, source_for
from cnntrain.data.sources.file_lists import FileListSource
from cnntrain.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Key:
    """One image: its key (a path for image files), the split its source put it in, its index there."""

    key: str
    origin: str
    index: int
    path: Path | None = None  # the image file, when the source reads files


class KeyList(ImageContainer):
    """Keys standing in for a split's images: taken and joined as the images would be, never read."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.keys), 1, 1, 1))

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        raise TypeError("a KeyList holds keys, not images")

    def to(self, device: Any) -> KeyList:
        return self

    def take(self, labels: torch.Tensor, indices: torch.Tensor) -> tuple[KeyList, torch.Tensor]:
        return KeyList([self.keys[i] for i in indices.tolist()]), labels[indices]

    def concat(self, other: Any) -> KeyList:
        return KeyList(self.keys + other.keys)

    def batches(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a KeyList holds keys, not images")


def refuse_streams(cfg: DatasetConfig) -> None:
    """A streamed source has no index to name an image by: one line, before anything is trained."""
    if str(cfg.kind) == "webdataset":
        raise DataError(
            "dataset=webdataset: the audit needs every image by a stable key and an index, and a stream of shards "
            "has no index; write the shards' images to a folder or a label file first (or audit the dataset the "
            "shards were written from)"
        )


def keyed(source: Source, description: Any, read: SourceSplits) -> SourceSplits:
    """The source's splits with keys for images, aligned with `read` (its images as read, files that did not
    decode left out as read left them)."""
    skipped = {Path(p) for p, _ in read.skipped}
    listing = source.found(description) if isinstance(source, FileListSource) else None
    out = {}
    for name in SPLITS:
        split = getattr(read, name)
        if split is None:
            out[name] = None
            continue
        if listing is not None:
            files = [p for p, _ in getattr(listing, f"{name}_files") if Path(p) not in skipped]
            keys = [Key(str(p), name, i, Path(p)) for i, p in enumerate(files)]
        else:
            keys = [Key(f"{name}/{i}", name, i) for i in range(len(split))]
        if len(keys) != len(split):
            raise DataError(f"the {name} split has {len(split)} images but {len(keys)} keys; cannot audit it")
        out[name] = SourceSplit(KeyList(keys), split.labels)
    return SourceSplits(out["train"], out["val"], out["test"])


@dataclass
class FoldParts:
    """What fold i of K holds out (val) and what it trains on, as keys and images; the test split is shared."""

    val_keys: list[Key]
    val: SourceSplit
    train_keys: list[Key]
    train: SourceSplit
    test_keys: list[Key]
    test: SourceSplit


def fold_parts(cfg: DatasetConfig, read: SourceSplits, keys: SourceSplits, seed: int, folds: int) -> list[FoldParts]:
    """Each fold's parts, assembled as its run assembled them (dataset.fraction left out: every image is
    predicted by the fold that held it out)."""
    parts = []
    for fold in range(folds):
        fold_cfg = replace(cfg, folds=folds, fold=fold)
        train, val, test = assemble(fold_cfg, read, seed, fraction=False)
        ktrain, kval, ktest = assemble(fold_cfg, keys, seed, fraction=False)
        parts.append(FoldParts(kval.images.keys, val, ktrain.images.keys, train, ktest.images.keys, test))
    return parts


def check_class_counts(labels: torch.Tensor, classes: list[str], folds: int) -> None:
    """Every class (every label of a multi-label set) needs at least K images in the pool the folds cut, so each
    fold can hold one out; the first that has fewer is named."""
    counts = labels.sum(dim=0) if labels.ndim == 2 else torch.bincount(labels, minlength=len(classes))
    for name, count in zip(classes, counts.tolist(), strict=True):
        if int(count) < folds:
            raise DataError(
                f"class {name!r} has {int(count)} image(s) in the training pool; {folds} folds need at least {folds} "
                f"of every class (use fewer folds, --folds 2 at least, or add images of {name!r})"
            )


def check_pool(cfg: DatasetConfig, seed: int, folds: int) -> None:
    """Before any fold is trained: a source the audit can key, and K images of every class in the pool the folds
    are cut from (labels only; no image decoded)."""
    from cnntrain.data.loading import describe_data  # the data's description: only when a command checks

    refuse_streams(cfg)
    description = describe_data(cfg)
    source = source_for(cfg)
    splits = source.leave_out(source.labels(description))
    train, val, _ = assemble(replace(cfg, folds=folds, fold=0), splits, seed, fraction=False)
    check_class_counts(torch.cat([train.labels, val.labels]), description.classes, folds)
