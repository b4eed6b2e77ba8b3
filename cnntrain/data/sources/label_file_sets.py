"""Multi-label rows of a label file: each image's set of labels, as a multi-hot row (one 0/1 per label).

A file gives its sets one of three ways:

    path,labels                 one column of labels split by dataset.label_delimiter (when not given, found:
    a.png,cat;dog               `;`, `,`, `|` or a space, label_delimiters.py); an empty cell has no label
    path,cat,dog,bird           one 0/1 column per label, named by dataset.label_columns (the column names are
    a.png,1,1,0                 the label names)
    {"path": "a.png", "labels": ["cat", "dog"]}     JSON Lines: a list of labels (found without any setting)

The label names are dataset.classes when set (a label not in it is refused by line), else the labels found,
sorted (as numbers when all are whole numbers), as for single-label files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.sources.label_delimiters import find_delimiter
from cnntrain.errors import DataError

WHOLE_NUMBER = re.compile(r"[+-]?\d+")
TRUE_CELLS = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0}

Row = tuple[int, dict[str, Any]]


def is_multilabel(cfg: DatasetConfig, rows: list[Row], label_col: str | None) -> bool:
    """Whether the file holds label sets: said by dataset.task, label_delimiter or label_columns, or found (a JSON
    list in the label column)."""
    task = cfg.task
    if task is not None:
        return task == TASK_MULTILABEL
    if cfg.label_delimiter is not None or cfg.label_columns is not None:
        return True
    return label_col is not None and any(isinstance(row.get(label_col), list) for _, row in rows)


def label_sets(
    cfg: DatasetConfig, file: Path, rows: list[Row], columns: list[str], label_col: str | None
) -> tuple[list[str], list[tuple[int, ...]], str]:
    """(label names, each row's multi-hot tuple, how the file gave them: for the layout line)."""
    if cfg.label_columns is not None:
        names = [str(c) for c in cfg.label_columns]
        missing = [name for name in names if name not in columns]
        if missing:
            raise DataError(
                f"label file {file}: dataset.label_columns names '{missing[0]}', not one of its columns "
                f"({', '.join(columns)})"
            )
        if cfg.classes is not None and [str(c) for c in cfg.classes] != names:
            raise DataError(
                f"label file {file}: dataset.classes ({', '.join(map(str, cfg.classes))}) differs from "
                f"dataset.label_columns ({', '.join(names)}); with 0/1 columns the columns name the "
                f"labels: set dataset.classes=null"
            )
        hot = [tuple(_zero_one(file, line, row.get(name), name) for name in names) for line, row in rows]
        return names, hot, f"one 0/1 column per label ({', '.join(names)})"
    if label_col is None:
        raise DataError(
            f"label file {file}: no label column; name it with dataset.label_column, or list 0/1 "
            f"columns with dataset.label_columns"
        )
    given = cfg.label_delimiter is not None
    delimiter = (
        str(cfg.label_delimiter)
        if given
        else find_delimiter(
            (str(row[label_col]) for _, row in rows if isinstance(row.get(label_col), str)),
            f"label file {file}, column '{label_col}'",
        )
    )
    sets = [_split_cell(file, line, row.get(label_col), label_col, delimiter) for line, row in rows]
    names = _names(cfg, file, [line for line, _ in rows], sets)
    index = {name: i for i, name in enumerate(names)}
    hot = []
    for labels in sets:
        row = [0] * len(names)
        for label in labels:
            row[index[label]] = 1
        hot.append(tuple(row))
    found = "" if given else " (found; dataset.label_delimiter chooses another)"
    return names, hot, f"column '{label_col}' split on {json.dumps(delimiter)}{found}"


def _zero_one(file: Path, line: int, value: Any, column: str) -> int:
    text = str(value).strip().lower() if isinstance(value, (str, int, float, bool)) else ""
    if text not in TRUE_CELLS:
        shown = "empty" if value is None or text == "" else json.dumps(value)
        raise DataError(f"label file {file}, line {line}: column '{column}' is {shown}; each label column holds 0 or 1")
    return TRUE_CELLS[text]


def _split_cell(file: Path, line: int, value: Any, column: str, delimiter: str) -> list[str]:
    """A cell's labels (empty: an image with no label), each a name or a whole number in its plain form."""
    if value is None:
        items: list[Any] = []
    elif isinstance(value, list):
        items = value
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        items = str(value).split(delimiter)
    else:
        raise DataError(
            f"label file {file}, line {line}: {column} is {json.dumps(value)}; expected labels split "
            f"by {json.dumps(delimiter)} or a JSON list of labels"
        )
    labels: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise DataError(
                f"label file {file}, line {line}: {column} holds {json.dumps(item)}; a label is a name "
                f"or a whole number"
            )
        text = str(item).strip()
        if WHOLE_NUMBER.fullmatch(text):
            text = str(int(text))
        if text and text not in labels:
            labels.append(text)
    return labels


def _names(cfg: DatasetConfig, file: Path, lines: list[int], sets: list[list[str]]) -> list[str]:
    """dataset.classes (every label must be one of them, or a whole-number index into them), else the labels found."""
    configured = cfg.classes
    if configured is None:
        found = sorted({label for labels in sets for label in labels})
        if not found:
            raise DataError(f"label file {file}: no row has a label; multi-label data needs at least one label")
        if all(label.lstrip("-").isdigit() for label in found):
            found.sort(key=int)
        return found
    names = [str(c) for c in configured]
    known = set(names)
    for line, labels in zip(lines, sets):
        for i, label in enumerate(labels):
            if label in known:
                continue
            if label.isdigit() and int(label) < len(names):
                labels[i] = names[int(label)]
                continue
            raise DataError(
                f"label file {file}, line {line}: label '{label}' is not in dataset.classes "
                f"({', '.join(names)}) nor an index 0..{len(names) - 1} into it"
            )
    return names
