"""Label files: a CSV, TSV or JSON Lines file that names each image and its class (and optionally its split).

    path,label,split                     .csv (comma), .tsv (tab), .jsonl/.ndjson (one JSON object a line)
    cats/1.png,cat,train                 the first line of a CSV/TSV is the header; JSON Lines take the first
    dogs/7.jpg,dog,test                  object's keys as the columns

Columns are named by dataset.path_column / label_column / split_column, or found in the header under their usual
names (PATH_NAMES, LABEL_NAMES, SPLIT_NAMES). Image paths are relative to dataset.image_dir (null: the label
file's folder; absolute paths are used as they are), and an id without an image suffix names the file with one.
Labels are class names or whole numbers: with dataset.classes set, a label that is one of its names is that class
and a whole number indexes into it; without it, the classes are the labels found, sorted (numerically when every
label is a whole number). With a split column every row must name train, val (valid,
validation) or test; a split no row names is taken from train by cnntrain.data.loading. Several labels per image
(a delimited column, 0/1 columns, JSON lists) are read by cnntrain.data.sources.label_file_sets.

Every message names the file and the line (1-based line of the file, the header being line 1), so a user can
open the file at the mistake. The file is read once per run (describe), without decoding an image.
"""

from __future__ import annotations

import csv
import json
import os
import re
from contextlib import closing
from pathlib import Path
from typing import Any

from cnntrain.config.names import TASK_MULTILABEL, TASK_SINGLE
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.image_cache import ImageFiles
from cnntrain.data.images import IMAGE_SUFFIXES, image_input_shape
from cnntrain.data.sources.file_lists import FileListing, FileListSource
from cnntrain.data.sources.label_delimiters import sets_note
from cnntrain.data.sources.label_file_sets import is_multilabel, label_sets
from cnntrain.errors import DataError, first_line
from cnntrain.reading import MAX_LABEL_FILE_BYTES, check_fields, json_value, text_lines

FORMATS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSON Lines", ".ndjson": "JSON Lines"}
PATH_NAMES = ("path", "image", "file", "filename", "filepath", "image_path")
LABEL_NAMES = ("label", "class", "target", "category", "labels")
SPLIT_NAMES = ("split",)
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")
EXAMPLE_JSON = '{"path": "a.png", "label": "cat"}'
WHOLE_NUMBER = re.compile(r"[+-]?\d+")

Row = tuple[int, dict[str, Any]]
"""(line number in the file, the row's values by column)."""


class LabelFileSource(FileListSource):
    kind = "labels"

    def find(self) -> FileListing:
        return scan_label_file(self.cfg)  # the one read of the file per run; it checks every row and image path

    def location(self) -> str:
        return str(self.cfg.file)


def scan_label_file(cfg: DatasetConfig) -> FileListing:
    """Read and check dataset.file; raise DataError naming the file, the line and what is allowed."""
    if not cfg.file:
        raise DataError(
            "dataset.file is not set: name a label file (.csv, .tsv, .jsonl or .ndjson) of image paths and labels"
        )
    file = Path(str(cfg.file))
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"label file {file}: unknown format '{file.suffix or '(no suffix)'}'; expected "
            f"{', '.join(FORMATS)} (comma-separated, tab-separated, JSON Lines)"
        )
    if not file.exists():
        raise DataError(f"label file {file} not found; set dataset.file to a {', '.join(FORMATS)} file")
    try:
        columns, rows = _read_jsonl(file) if FORMATS[suffix] == "JSON Lines" else _read_table(file, suffix)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read label file {file}: {first_line(err)}") from None
    path_col = _column(cfg, "path_column", PATH_NAMES, columns, file, required=True)
    label_col = _column(cfg, "label_column", LABEL_NAMES, columns, file, required=cfg.label_columns is None)
    split_col = _column(cfg, "split_column", SPLIT_NAMES, columns, file, required=False)
    if not rows:
        raise DataError(f"label file {file} has a header but no rows")
    multilabel = is_multilabel(cfg, rows, label_col)
    if multilabel:  # each row's label is its multi-hot tuple (cnntrain.data.sources.label_file_sets)
        classes, indices, how = label_sets(cfg, file, rows, columns, label_col)
    else:
        texts = [_label_text(file, line, row.get(label_col), label_col) for line, row in rows]
        classes, indices = _classes(cfg, file, [line for line, _ in rows], texts)
    paths = _image_paths(file, rows, path_col, cfg.image_dir, cfg.allow_outside_paths)
    split_of = [_split(file, line, row.get(split_col), split_col) if split_col else "train" for line, row in rows]
    by_split: dict[str, ImageFiles] = {name: [] for name in SPLITS}
    for path, index, split in zip(paths, indices, split_of):
        by_split[split].append((path, index))
    if not by_split["train"]:
        raise DataError(f"label file {file}: no row has {split_col}=train; the training split needs rows")
    used = sorted(set(indices))
    if not multilabel and len(used) < 2:
        raise DataError(
            f"label file {file}: column '{label_col}' holds one class ({classes[used[0]]}); "
            f"a classifier needs at least 2"
        )
    format_name = FORMATS[suffix]
    shape = image_input_shape(cfg, by_split["train"][0][0])
    named = "/".join(c for c in (path_col, None if cfg.label_columns else label_col, split_col) if c)
    counts = ", ".join(f"{name} {len(by_split[name])}" for name in SPLITS if by_split[name])
    missing = [word for name, word in (("val", "validation"), ("test", "test")) if not by_split[name]]
    rest = f"; {' and '.join(missing)} split off train (stratified)" if missing else ""
    task = (
        f"; multi-label: {len(classes)} labels from {how}" if multilabel else sets_note(texts, f"column '{label_col}'")
    )
    outside = "; images outside its folder allowed (dataset.allow_outside_paths)" if cfg.allow_outside_paths else ""
    layout = f"label file {file} ({format_name}, columns {named}): {counts} rows{rest}{task}{outside}"
    return FileListing(
        file.parent,
        classes,
        shape,
        by_split["train"],
        by_split["val"] or None,
        by_split["test"] or None,
        layout,
        task=TASK_MULTILABEL if multilabel else TASK_SINGLE,
    )


# -- reading the file -------------------------------------------------------------------------------------------


def _read_table(file: Path, suffix: str) -> tuple[list[str], list[Row]]:
    """A CSV/TSV file's header and its non-blank rows, each with the file line it starts on."""
    # -sig: the BOM spreadsheets write; text_lines: a regular file (a FIFO would never end), bounded in size and
    # line length (a 70 MB line of 300,000 columns would take gigabytes)
    lines = text_lines(file, MAX_LABEL_FILE_BYTES, "label file", newline="")
    with closing(lines):
        reader = csv.reader(lines, delimiter="\t" if suffix == ".tsv" else ",", strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise DataError(
                    f"label file {file} is empty; its first line must be a header naming the columns "
                    f"(e.g. path,label,split)"
                )
            check_fields(header, "label file", file, 1)
            header = [cell.strip() for cell in header]
            rows: list[Row] = []
            line = reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    if len(cells) > len(header):
                        raise DataError(
                            f"label file {file}, line {line}: {len(cells)} fields but the header names "
                            f"{len(header)} ({', '.join(header)})"
                        )
                    rows.append((line, dict(zip(header, cells))))
                line = reader.line_num + 1
        except csv.Error as err:
            raise DataError(
                f"label file {file}, line {reader.line_num}: not valid {FORMATS[suffix]} ({first_line(err)})"
            ) from None
    return header, rows


def _read_jsonl(file: Path) -> tuple[list[str], list[Row]]:
    """A JSON Lines file's objects (blank lines skipped); the columns are the first object's keys."""
    rows: list[Row] = []
    lines = text_lines(file, MAX_LABEL_FILE_BYTES, "label file")
    with closing(lines):
        for line, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                value = json_value(text, "label file", f"{file}, line {line}")
            except ValueError as err:
                raise DataError(
                    f"label file {file}, line {line}: not valid JSON ({first_line(err)}); JSON Lines "
                    f"hold one object per line, e.g. {EXAMPLE_JSON}"
                ) from None
            if not isinstance(value, dict):
                raise DataError(
                    f"label file {file}, line {line}: a JSON {type(value).__name__}, not an object; "
                    f"JSON Lines hold one object per line, e.g. {EXAMPLE_JSON}"
                )
            check_fields(list(value), "label file", file, line)
            rows.append((line, value))
    if not rows:
        raise DataError(f"label file {file} is empty; expected one JSON object per line, e.g. {EXAMPLE_JSON}")
    return list(rows[0][1]), rows


def _column(
    cfg: DatasetConfig, key: str, usual: tuple[str, ...], columns: list[str], file: Path, required: bool
) -> str | None:
    """The configured column (it must exist), else the first usual name the header has."""
    has = ", ".join(columns) or "none"
    chosen = getattr(cfg, key)
    if chosen is not None:
        if str(chosen) not in columns:
            raise DataError(f"label file {file}: dataset.{key}={chosen} is not one of its columns ({has})")
        return str(chosen)
    found = next((name for name in usual if name in columns), None)
    if found is None and required:
        raise DataError(
            f"label file {file}: no {key.split('_')[0]} column (looked for {', '.join(usual)}); its "
            f"columns: {has}; name it with dataset.{key}"
        )
    return found


# -- checking the rows ------------------------------------------------------------------------------------------


def _label_text(file: Path, line: int, value: Any, column: str) -> str:
    """A label as text: a name, or a whole number written in its plain form."""
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            f"label file {file}, line {line}: {column} is {json.dumps(value)}; expected a class name or a whole number"
        )
    text = str(value).strip()
    if not text:
        raise DataError(
            f"label file {file}, line {line}: {column} is empty; every row needs a class name or a whole number"
        )
    return str(int(text)) if WHOLE_NUMBER.fullmatch(text) else text


def _classes(cfg: DatasetConfig, file: Path, lines: list[int], texts: list[str]) -> tuple[list[str], list[int]]:
    """(class names, each row's class index): dataset.classes when set (names or indices into it), else the
    labels found, sorted (as numbers when all are whole numbers)."""
    configured = cfg.classes
    if configured is None:
        numbers = all(WHOLE_NUMBER.fullmatch(t) for t in texts)
        classes = sorted(set(texts), key=int if numbers else None)
        index = {name: i for i, name in enumerate(classes)}
        return classes, [index[t] for t in texts]
    classes = [str(c) for c in configured]
    index = {name: i for i, name in enumerate(classes)}
    indices = []
    for line, text in zip(lines, texts):
        if text in index:
            indices.append(index[text])
        elif WHOLE_NUMBER.fullmatch(text) and 0 <= int(text) < len(classes):
            indices.append(int(text))
        else:
            raise DataError(
                f"label file {file}, line {line}: label '{text}' is not in dataset.classes "
                f"({', '.join(classes)}) nor an index 0..{len(classes) - 1} into it"
            )
    return classes, indices


def _image_paths(file: Path, rows: list[Row], column: str, image_dir: Any = None, outside: bool = False) -> list[Path]:
    """Each row's image, relative to dataset.image_dir (null: the label file's folder); every one an image file
    that exists, none twice, and (unless dataset.allow_outside_paths) inside that folder once links are followed:
    a shared label file cannot pull files from elsewhere into a run and its report. A name without an image suffix
    (an id, as many label files give them) is the file of that name with one."""
    folder = file.parent if not image_dir else file.parent / str(image_dir)  # an absolute image_dir stays as it is
    inside = os.path.realpath(folder)
    paths: list[Path] = []
    first_line_of: dict[str, int] = {}
    missing: list[tuple[int, Path]] = []
    for line, row in rows:
        value = row.get(column)
        text = value.strip() if isinstance(value, str) else (str(value) if isinstance(value, int) else "")
        if not text or isinstance(value, bool):
            shown = "empty" if value is None or isinstance(value, str) else json.dumps(value)
            raise DataError(f"label file {file}, line {line}: {column} is {shown}; expected an image path")
        path = folder / text  # an absolute path stays as it is
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            path = _with_image_suffix(path)
            if path.suffix and path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(
                    f"label file {file}, line {line}: {text} is not an image file; expected "
                    f"{', '.join(IMAGE_SUFFIXES)} (or a name that is one without its suffix)"
                )
        key = os.path.normcase(os.path.normpath(os.path.abspath(path)))
        if key in first_line_of:
            raise DataError(
                f"label file {file}: lines {first_line_of[key]} and {line} both name {text}; each image may appear once"
            )
        first_line_of[key] = line
        if not outside and os.path.commonpath([inside, os.path.realpath(path)]) != inside:
            raise DataError(
                f"label file {file}, line {line}: {text} leads outside {folder} (to "
                f"{os.path.realpath(path)}); rows name images inside the dataset's folder unless "
                f"dataset.allow_outside_paths=true"
            )
        if not path.is_file():
            missing.append((line, path))
        paths.append(path)
    if missing:
        (line, path), more = missing[0], len(missing) - 1
        also = f", and {more} more image(s) are missing" if more else ""
        raise DataError(
            f"label file {file}, line {line}: image {path} not found{also}; relative paths are read "
            f"from {folder} (dataset.image_dir)"
        )
    return paths


def _with_image_suffix(path: Path) -> Path:
    """`path` plus the first image suffix (as written, lower or upper case) that names a file; else `path`."""
    for suffix in IMAGE_SUFFIXES:
        for spelled in (suffix, suffix.upper()):
            candidate = path.with_name(path.name + spelled)
            if candidate.is_file():
                return candidate
    return path


def _split(file: Path, line: int, value: Any, column: str) -> str:
    text = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text not in SPLIT_VALUES:
        shown = "empty" if value is None or not str(value).strip() else f"'{value}'"
        raise DataError(
            f"label file {file}, line {line}: {column} is {shown}; expected one of "
            f"{', '.join(SPLIT_VALUES)} on every row (drop the column to split everything off train)"
        )
    return SPLIT_VALUES[text]
