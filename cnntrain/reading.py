"""Reading files someone else made: one bounded reader that every source goes through.

A label file, a shard, a class list, an Arrow file or a run directory's steps.csv may come from anyone. Each is
opened here: only a regular file (checked with fstat on the open descriptor, so a FIFO, a device or a file that
is swapped meanwhile never blocks), never one under /proc or /sys (they call themselves regular files of size 0
and some never end), and never more bytes than its limit (a sparse file with a 4 GiB hole is refused from its
size, and a file that grows while read stops at the limit). Text is read in lines of bounded length, rows of
bounded fields and JSON of bounded nesting; hashing reads in chunks, so a signal lands between two of them.
Every refusal is one UnsafePathError/DataError line naming the file and the limit. docs/trust.md lists them.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cnntrain.errors import DataError, UnsafePathError

MAX_LABEL_FILE_BYTES = 1 << 30  # a label file (CSV, TSV, JSON Lines); a million rows of 100 bytes is 100 MB
MAX_LINE_CHARS = 65_536  # one line of a label file, a class list or a run's CSV
MAX_FIELDS = 1_024  # columns of a label file or a run's CSV row
MAX_JSON_DEPTH = 64  # nesting of one JSON value (a JSON Lines row, summary.json)
MAX_CLASS_LIST_BYTES = 16 << 20  # classes.txt: a million class names of 16 bytes
MAX_SHARD_BYTES = 64 << 30  # one WebDataset shard (read member by member; each member bounded below)
MAX_MEMBER_BYTES = 256 << 20  # one file inside a shard (an image of 8192x8192 pixels fits)
MAX_HASHED_BYTES = 1 << 30  # one file hashed for a cache key (an image, a shard)
MAX_RUN_FILE_BYTES = 64_000_000  # a run directory's steps.csv, metrics.csv, summary.json
CHUNK = 1 << 20
_SPECIAL_ROOTS = ("/proc", "/sys")  # kernel files that call themselves regular; /dev/shm holds real files
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # a string (skipped whole) or a bracket


def open_bounded(path: Path | str, limit: int, what: str) -> io.BufferedReader:
    """`path` opened to read bytes: a regular file of at most `limit` bytes (UnsafePathError/DataError otherwise;
    FileNotFoundError when missing). The caller still reads at most `limit` bytes (read_bytes, lines)."""
    from cnntrain.files import regular_fd

    path = Path(path)
    real = os.path.realpath(path)
    if any(real == root or real.startswith(root + os.sep) for root in _SPECIAL_ROOTS):
        raise UnsafePathError(
            f"{what} {path} is a special file ({real}), not a regular file; cnntrain reads only regular files"
        )
    fd = regular_fd(path)
    size = os.fstat(fd).st_size
    if size > limit:
        os.close(fd)
        raise DataError(too_large(what, path, limit))
    raw = io.FileIO(fd, "rb")
    raw.name = str(path)
    return io.BufferedReader(raw)


def too_large(what: str, path: Path | str, limit: int) -> str:
    """The one line for a file over its limit."""
    return f"{what} {path} is larger than {limit:,} bytes, the most cnntrain reads from such a file; refused"


def read_bytes(path: Path | str, limit: int, what: str) -> bytes:
    """A whole regular file of at most `limit` bytes."""
    with open_bounded(path, limit, what) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while read, or its size lied
        raise DataError(too_large(what, path, limit))
    return data


def read_stream(handle: Any, limit: int, what: str, name: str) -> bytes:
    """At most `limit` bytes of an open stream (a shard's member), read in chunks; DataError past it."""
    parts, total = [], 0
    while chunk := handle.read(min(CHUNK, limit + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise DataError(too_large(what, name, limit))
    return b"".join(parts)


def text_lines(
    path: Path | str, limit: int, what: str, *, encoding: str = "utf-8-sig", newline: str | None = None
) -> Iterator[str]:
    """The lines of a text file (with their ends), each at most MAX_LINE_CHARS characters and the whole file at
    most `limit` bytes; DataError naming the file and line past either."""
    with io.TextIOWrapper(open_bounded(path, limit, what), encoding=encoding, newline=newline) as handle:
        yield from bounded_lines(handle, what, path)


def bounded_lines(handle: Iterable[str] | Any, what: str, path: Path | str) -> Iterator[str]:
    """Lines of an open text stream, each read with readline's bound, so a line of 4 GB is never held whole."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            raise DataError(
                f"{what} {path}, line {number}: longer than {MAX_LINE_CHARS:,} characters, the most "
                f"cnntrain reads in one line; refused"
            )
        yield line


def check_fields(cells: list[str], what: str, path: Path | str, line: int) -> None:
    """DataError for a row of more than MAX_FIELDS fields."""
    if len(cells) > MAX_FIELDS:
        raise DataError(
            f"{what} {path}, line {line}: {len(cells):,} fields, more than the {MAX_FIELDS:,} cnntrain "
            f"reads in one row; refused"
        )


def json_value(text: str | bytes, what: str, where: str) -> Any:
    """json.loads with bounded nesting (MAX_JSON_DEPTH): the depth is checked before parsing, so no recursion
    deepens; ValueError from the parser passes through for the caller's message."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise DataError(f"{what} {where}: nested too deeply (more than {MAX_JSON_DEPTH} levels); refused")
    return json.loads(text)


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of brackets in JSON text, strings skipped (one linear scan, no recursion)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if "[" not in text and "{" not in text:
        return 0
    deepest = depth = 0
    for match in _JSON_TOKENS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def hash_file(path: Path | str, digest: Any, limit: int = MAX_HASHED_BYTES, what: str = "file") -> None:
    """Feed a regular file of at most `limit` bytes to `digest` in chunks (a signal is handled between two)."""
    with open_bounded(path, limit, what) as handle:
        total = 0
        while chunk := handle.raw.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise DataError(too_large(what, path, limit))
            digest.update(chunk)


def is_regular(path: Path | str) -> bool:
    """Whether `path` is a regular file (following links), without opening it: a glob's match is kept only then."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
