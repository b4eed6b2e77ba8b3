"""What separates the labels of a label set written as text (`0;3;7`, `cat, dog`, `a|b`, `cat dog`), found from
the data when dataset.label_delimiter is not given; label files and WebDataset shards both ask here.

A separator other than a space wins when it is the only one in the column (spaces around it, or inside a label
name, stay part of the text and are trimmed); a column with none of `;`, `,`, `|` is split on spaces; a column
that holds two of `;`, `,`, `|` is ambiguous and refused in one line that asks for dataset.label_delimiter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from cnntrain.errors import DataError

SEPARATORS = (";", ",", "|")  # looked for in this order; a space is the fallback
SPACE = " "


def find_delimiter(cells: Iterable[str], where: str) -> str:
    """The delimiter of these label-set cells (JSON lists among them are skipped); DataError when ambiguous."""
    texts = [cell for cell in cells if not cell.lstrip().startswith("[")]
    found = [sep for sep in SEPARATORS if any(sep in text for text in texts)]
    if len(found) > 1:
        example = next(text for text in texts if any(sep in text for sep in found[1:]))
        raise DataError(
            f"{where}: the label sets hold both {' and '.join(json.dumps(s) for s in found)} (e.g. "
            f"{json.dumps(example[:40])}); say which one separates labels: dataset.label_delimiter="
            f"'{found[0]}'"
        )
    return found[0] if found else SPACE


def looks_like_sets(cells: list[str]) -> tuple[str, str] | None:
    """(delimiter, an example cell) when single-label cells look like label sets: a separator other than a space
    splits some of them and the split leaves fewer distinct labels than distinct cells (`0;3;7`, `3;7`, ... over
    digits); None otherwise (a name with a comma in it stays a name)."""
    distinct = set(cells)
    for sep in SEPARATORS:
        split = [cell for cell in distinct if sep in cell]
        if len(split) < 2:
            continue
        labels = {item.strip() for cell in distinct for item in cell.split(sep) if item.strip()}
        if len(labels) < len(distinct):
            return sep, split[0]
    return None


def sets_note(cells: list[str], column: str) -> str:
    """The data line's note for a single-label run on a column that looks like label sets ('' when it does not)."""
    found = looks_like_sets(cells)
    if found is None:
        return ""
    sep, example = found
    return (
        f"; {column} looks like label sets split on {json.dumps(sep)} (e.g. {json.dumps(example[:40])}): "
        f"for multi-label add dataset.task=multilabel"
    )
