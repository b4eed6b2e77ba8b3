"""dataset.exclude=FILE: images to leave out of a dataset, whatever its source, without touching its files (the
list cnntrain-audit writes as exclude.txt, or one's own).

The file lists one image a line (blank lines and lines starting with # are skipped): for image files (class
folders, label files) its path, absolute or relative to the list's own folder; for a dataset without files
(torchvision, Hugging Face) its key `split/index` (train/17: the 18th image of the train split as the source
gives it). A streamed source cannot leave images out by index and refuses the key. A list none of whose entries
is in the dataset is refused too: it is more likely the wrong list than a clean dataset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cnntrain.config.schema import DatasetConfig
from cnntrain.errors import DataError, UserError, first_line
from cnntrain.reading import MAX_LABEL_FILE_BYTES, text_lines

SPLITS = ("train", "val", "test")


def listed(cfg: DatasetConfig) -> set[str] | None:
    """The entries of dataset.exclude (paths made absolute against the list's folder); None when unset."""
    if cfg.exclude is None:
        return None
    path = Path(str(cfg.exclude)).expanduser()
    try:
        lines = [line.strip() for line in text_lines(path, MAX_LABEL_FILE_BYTES, "exclude list")]
    except FileNotFoundError:
        raise DataError(f"dataset.exclude={path}: no such file (a list of images to leave out, one a line)") from None
    except UserError as err:
        raise DataError(f"dataset.exclude={path}: {first_line(err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"dataset.exclude={path}: cannot read it as UTF-8 text ({first_line(err)})") from None
    entries = {line for line in lines if line and not line.startswith("#")}
    return {line if _is_key(line) else os.path.abspath(path.parent / line) for line in entries}


def _is_key(entry: str) -> bool:
    split, _, index = entry.partition("/")
    return split in SPLITS and index.isdigit()


def without_files(cfg: DatasetConfig, files: Any, names: set[str] | None) -> Any:
    """(path, label) pairs without the listed paths."""
    if not names:
        return files
    return [(p, label) for p, label in files if os.path.abspath(p) not in names]


def check_matched(cfg: DatasetConfig, names: set[str] | None, kept: int, whole: int) -> None:
    """A list that leaves nothing out is refused: it names another dataset's images."""
    if names and kept == whole:
        example = sorted(names)[0]
        raise DataError(
            f"dataset.exclude={cfg.exclude}: none of its {len(names):,} entries (e.g. {example}) is an image of this "
            f"dataset; list image paths (image files) or split/index keys (train/17) of this dataset"
        )


def without_keys(cfg: DatasetConfig, splits: Any) -> Any:
    """A source's splits (cnntrain.data.sources.SourceSplits) without the images listed by split/index key; for
    sources without files."""
    names = listed(cfg)
    if not names:
        return splits
    if str(cfg.kind) == "webdataset":
        raise DataError(
            f"dataset.exclude={cfg.exclude}: a stream of shards cannot leave images out by index; filter the shards "
            f"(cnntrain-shards of a folder without them)"
        )
    whole = kept = 0
    for name in SPLITS:
        split = getattr(splits, name)
        if split is None:
            continue
        drop = {int(e.partition("/")[2]) for e in names if e.partition("/")[0] == name}
        keep = torch.tensor([i for i in range(len(split)) if i not in drop], dtype=torch.int64)
        whole, kept = whole + len(split), kept + len(keep)
        if len(keep) < len(split):
            setattr(splits, name, split.take(keep))
    check_matched(cfg, names, kept, whole)
    return splits
