"""The classes of WebDataset shards and how their label entries are read, decided once from the indexed entries.

Class names come from dataset.classes, else dataset.classes_file, else classes.txt beside the first training
shard, else the labels themselves: whole numbers give classes named `0..N-1` (N = dataset.num_classes, or the
largest label seen plus one, as timm's and webdataset's users train), other labels give the names found, sorted
(as label files do). Label
sets (multi-label) are found as in label files: dataset.task=multilabel without dataset.label_delimiter splits
the entries on the separator they use (label_delimiters.py), and entries that are JSON lists are sets.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnntrain.config.names import TASK_MULTILABEL, TASK_SINGLE
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.sources.label_delimiters import find_delimiter, sets_note
from cnntrain.data.sources.label_file_sets import WHOLE_NUMBER
from cnntrain.errors import DataError, first_line
from cnntrain.reading import MAX_CLASS_LIST_BYTES, text_lines


def entry_delimiter(cfg: DatasetConfig, entries: list[str]) -> str | None:
    """What splits a label entry into a set (multi-label); None: one class per sample."""
    if cfg.label_delimiter is not None:
        return str(cfg.label_delimiter)
    if cfg.task == TASK_MULTILABEL or (cfg.task is None and any(e.lstrip().startswith("[") for e in entries)):
        return find_delimiter(entries, "the shards' label entries")
    return None


def entry_labels(entry: str, delimiter: str | None) -> list[str]:
    """The labels an entry holds as text: one, or (with a delimiter) its set, split or read as a JSON list."""
    text = entry.strip()
    if delimiter is None:
        return [text]
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return [text]  # refused with its shard and sample when the entries are parsed
        return [str(item).strip() for item in items] if isinstance(items, list) else [text]
    return [item.strip() for item in text.split(delimiter) if item.strip()]


def shard_classes(
    cfg: DatasetConfig, first_shard: str, entries: list[str], delimiter: str | None
) -> tuple[list[str], str]:
    """(the class names, what the data line says about where they came from: '' for a list given by name)."""
    if cfg.classes:
        return [str(c) for c in cfg.classes], ""
    path = Path(str(cfg.classes_file)) if cfg.classes_file else Path(first_shard).parent / "classes.txt"
    if cfg.classes_file or path.is_file():
        if not path.is_file():
            raise DataError(f"dataset.classes_file {path} not found; it names the classes, one a line")
        try:  # through the bounded reader: a regular file, within MAX_CLASS_LIST_BYTES and the line bound
            names = [line.strip() for line in text_lines(path, MAX_CLASS_LIST_BYTES, "classes file") if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read classes file {path}: {first_line(err)}") from None
        if len(names) < 2:
            raise DataError(f"classes file {path} names {len(names)} class(es); it needs one name a line, at least 2")
        return names, ""
    labels = {label for entry in entries for label in entry_labels(entry, delimiter)}
    if labels and all(WHOLE_NUMBER.fullmatch(label) and int(label) >= 0 for label in labels):
        largest = max(int(label) for label in labels)
        count = int(cfg.num_classes) if cfg.num_classes is not None else largest + 1
        if largest >= count:
            raise DataError(
                f"the shards hold label {largest}, outside dataset.num_classes={count} (0..{count - 1}); "
                f"raise dataset.num_classes or name the classes (dataset.classes_file)"
            )
        if count < 2:
            raise DataError(
                "the shards hold only label 0; a classifier needs at least 2 classes: set "
                "dataset.num_classes or name the classes (dataset.classes_file)"
            )
        given = f"dataset.num_classes={count}" if cfg.num_classes is not None else "the largest label seen"
        return [str(i) for i in range(count)], f"; classes 0..{count - 1} by number ({given})"
    if len(labels) < 2:
        raise DataError(
            f"no class names for the shards: set dataset.classes=[...] or dataset.classes_file (one name "
            f"a line); {path} not found, and the labels hold {len(labels)} class(es)"
        )
    return sorted(labels), f"; {len(labels)} classes named by the labels found"


def single_label_note(entries: list[str], delimiter: str | None) -> str:
    """A single-label run on entries that look like label sets: the data line's note."""
    return sets_note([e.strip() for e in entries], "the label entries") if delimiter is None else ""


def task_of(delimiter: str | None) -> str:
    return TASK_SINGLE if delimiter is None else TASK_MULTILABEL
