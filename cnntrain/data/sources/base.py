"""What every data source answers, so nothing after it asks which kind of dataset it has.

A source is chosen once from `dataset.kind` (cnntrain.data.sources.source_for). It answers three questions:
`describe` (are the files there; input shape and classes, as cheaply as the data allows), `labels` (each
split's labels without decoding an image: what the preflight checks balance with) and `read` (each split's
images and labels). A split a dataset does not ship is None: cnntrain.data.loading then takes it from the
training split, seeded and stratified, the same way for every source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import SourceSplit
from cnntrain.data.description import DataDescription
from cnntrain.data.exclude import without_keys


@dataclass
class SourceSplits:
    """train, and val/test when the dataset ships them (None: split off train by cnntrain.data.loading)."""

    train: SourceSplit
    val: SourceSplit | None = None
    test: SourceSplit | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason): left out (skip_bad_images)


class Source(ABC):
    """One dataset's files behind the three questions the data path asks; `cfg` is the dataset config."""

    kind: str = ""

    def __init__(self, cfg: DatasetConfig) -> None:
        self.cfg = cfg

    found_type: type | None = None
    """The type of what `find` returns (it has .input_shape and .classes)."""

    def describe(self) -> DataDescription:
        """Check the files are there (downloading if allowed) and return the input shape and the classes. By
        default that is `find`, kept in DataDescription.found so a run looks at its files once (`found`)."""
        found = self.find()
        return DataDescription(found.input_shape, found.classes, found=found, task=getattr(found, "task", "single"))

    def find(self) -> Any:
        """Look at the files once: what they hold, without decoding the data (a source that describes itself
        otherwise need not have it)."""
        raise NotImplementedError

    def found(self, description: DataDescription) -> Any:
        """What describe found, or a fresh look when the description came from elsewhere (a saved run's)."""
        kept = description.found
        return kept if self.found_type is not None and isinstance(kept, self.found_type) else self.find()

    @abstractmethod
    def labels(self, description: DataDescription) -> SourceSplits:
        """Each split's labels (images None), in the order `read` gives them."""

    @abstractmethod
    def read(self, description: DataDescription) -> SourceSplits:
        """Each split's images and labels."""

    def leave_out(self, splits: SourceSplits) -> SourceSplits:
        """`splits` (from labels or read) without the images dataset.exclude lists by split/index key; a source of
        image files leaves listed paths out of its listing instead (FileListSource)."""
        return without_keys(self.cfg, splits)

    def location(self) -> str:
        """Where the data is, for messages."""
        return str(self.cfg.root)

    def layout(self, description: DataDescription) -> str:
        """One line saying what was found and which splits it gives, for the start of a run and summary.json."""
        return f"{self.kind} data under {self.location()}"
