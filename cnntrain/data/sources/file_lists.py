"""What the sources whose samples are image files share (class folders, label files): each split is a list of
(file, label) pairs found while describing, turned into tensors by one ImageReader (cnntrain.data.image_files)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cnntrain.data.containers import SourceSplit
from cnntrain.data.description import DataDescription
from cnntrain.data.exclude import check_matched, listed, without_files
from cnntrain.data.image_cache import ImageFiles
from cnntrain.data.image_files import ImageReader
from cnntrain.data.sources.base import Source, SourceSplits


@dataclass
class FileListing:
    """A dataset's image files per split, found without decoding them."""

    cache_root: Path  # the folder the decoded images' cache is named for (under dataset.cache_dir)
    classes: list[str]
    input_shape: tuple[int, int, int]
    train_files: ImageFiles
    val_files: ImageFiles | None  # None: split val off train
    test_files: ImageFiles | None  # None: split test off train
    layout: str  # one line: what was found
    task: str = "single"  # multilabel: each file's label is its multi-hot row (a tuple of 0/1, one per class)


class FileListSource(Source):
    """A source that lists image files (`listing`); labels and images follow from the listing."""

    found_type = FileListing

    @abstractmethod
    def find(self) -> FileListing:
        """Find and check the files (the one look at them per run: describe keeps it)."""

    def found(self, description: DataDescription) -> FileListing:
        """The listing describe found, without the files dataset.exclude lists."""
        listing = super().found(description)
        names = listed(self.cfg)
        if not names:
            return listing
        parts = {f"{s}_files": getattr(listing, f"{s}_files") for s in ("train", "val", "test")}
        kept = {key: None if files is None else without_files(self.cfg, files, names) for key, files in parts.items()}
        count = sum(len(files or []) for files in kept.values())
        check_matched(self.cfg, names, count, sum(len(files or []) for files in parts.values()))
        whole = sum(len(files or []) for files in parts.values())
        note = f"; dataset.exclude leaves out {whole - count:,} image(s)"
        return replace(listing, **kept, layout=listing.layout + note)

    def leave_out(self, splits: SourceSplits) -> SourceSplits:
        return splits  # the listing has left them out already

    def labels(self, description: DataDescription) -> SourceSplits:
        return _splits(self.found(description), lambda files, split: (None, _labels(files)))

    def read(self, description: DataDescription) -> SourceSplits:
        found, reader = self.found(description), ImageReader.from_config(self.cfg)
        splits = _splits(
            found, lambda files, split: reader.load(files, description.input_shape, found.cache_root, split)
        )
        splits.skipped = reader.skipped
        return splits

    def layout(self, description: DataDescription) -> str:
        return self.found(description).layout


def _labels(files: ImageFiles) -> torch.Tensor:
    return torch.tensor([label for _, label in files], dtype=torch.int64)


def _splits(found: FileListing, load: Any) -> SourceSplits:
    """Apply load(files, split_name) -> (images, labels) to each split the listing has."""

    def split(files: ImageFiles | None, name: str) -> SourceSplit | None:
        return None if files is None else SourceSplit(*load(files, name))

    return SourceSplits(
        train=split(found.train_files, "train"), val=split(found.val_files, "val"), test=split(found.test_files, "test")
    )
