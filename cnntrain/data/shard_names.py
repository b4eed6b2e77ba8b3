"""Shard names from brace ranges and globs, counted before they are expanded.

`train-{000..099}.tar` and `shards/*.tar` come from a config, and a saved run's overrides are replayed by
cnntrain-reproduce: a pattern of forty `{,}` names 2^40 files and would never finish expanding. So the pattern's
count is worked out from its braces first (no expansion), refused past MAX_SHARD_NAMES in one line, and only
then expanded; a glob stops at the same count. A match is kept only when it is a regular file (a FIFO named
train-0.tar would block the reader).
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Iterable

from cnntrain.errors import DataError
from cnntrain.reading import is_regular

MAX_SHARD_NAMES = 100_000  # shard files one setting may name (large public sets have a few thousand)
MAX_PATTERN_CHARS = 4_096
MAX_BRACE_DEPTH = 32  # braces inside braces (counting recurses once per level)
_RANGE = re.compile(r"(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?")


def expand(item: str, key: str) -> list[str]:
    """The shard files one pattern names, in order, each a regular file; DataError past MAX_SHARD_NAMES or when a
    name matches nothing."""
    import braceexpand

    too_many = (
        f"{key}: {item[:80]!r} names more than {MAX_SHARD_NAMES:,} shard files, the most one setting may "
        f"name; refused (write fewer braces, or list the shards)"
    )
    if len(item) > MAX_PATTERN_CHARS:
        raise DataError(f"{key}: a shard pattern of {len(item):,} characters, more than {MAX_PATTERN_CHARS:,}; refused")
    if _depth(item) > MAX_BRACE_DEPTH:
        raise DataError(f"{key}: {item[:80]!r} nests braces more than {MAX_BRACE_DEPTH} deep; refused")
    if count(item) > MAX_SHARD_NAMES:
        raise DataError(too_many)
    try:
        names = list(itertools.islice(braceexpand.braceexpand(item), MAX_SHARD_NAMES + 1))
    except braceexpand.UnbalancedBracesError as err:
        raise DataError(f"{key}: {item!r} is not a valid brace pattern ({err})") from None
    found: dict[str, None] = {}
    for name in names:
        if glob.has_magic(name):
            matched = sorted(itertools.islice(glob.iglob(name), MAX_SHARD_NAMES + 1))
        else:
            matched = [name]
        matched = [path for path in matched if is_regular(path)]
        if not matched:
            raise DataError(f"{key}: no shard matches {name}" + (f" (from {item})" if name != item else ""))
        found.update(dict.fromkeys(matched))
        if len(found) > MAX_SHARD_NAMES:
            raise DataError(too_many)
    return list(found)


def count(pattern: str) -> int:
    """How many names brace expansion makes of `pattern` (at most MAX_SHARD_NAMES + 1: counting stops there),
    from its braces alone."""
    total, _ = _sequence(pattern, 0, top=True)
    return total


def _sequence(text: str, position: int, *, top: bool) -> tuple[int, int]:
    """The count of one alternative (a product of its brace groups), and where it ends (a `,` or `}` of the group
    around it, or the end)."""
    total = 1
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if not top and char in ",}":
            return total, position
        if char == "{":
            group, position = _group(text, position)
            total = _cap(total * group)
            continue
        position += 1
    return total, position


def _group(text: str, start: int) -> tuple[int, int]:
    """The count of the brace group opening at `start`, and the position after it (a group without a comma or a
    range is text, as braceexpand keeps it)."""
    end = _closing(text, start)
    if end < 0:
        return 1, start + 1
    inner = text[start + 1 : end]
    matched = _RANGE.fullmatch(inner)
    if matched:
        return _range_count(*matched.groups()), end + 1
    alternatives: list[int] = []
    position = start + 1
    while True:
        found, position = _sequence(text, position, top=False)
        alternatives.append(found)
        if position >= end:
            break
        position += 1  # past the comma
    if len(alternatives) == 1:
        return 1, end + 1
    return _cap(sum(alternatives)), end + 1


def _closing(text: str, start: int) -> int:
    depth, position = 0, start
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return position
        position += 1
    return -1


def _range_count(first: str, last: str, step: str | None) -> int:
    step_size = max(1, abs(int(step))) if step else 1
    if first.lstrip("-").isdigit() and last.lstrip("-").isdigit():
        span = abs(int(last) - int(first))
    else:
        span = abs(ord(last) - ord(first))
    return _cap(span // step_size + 1)


def _depth(text: str) -> int:
    deepest = depth = 0
    for char in text.replace("\\\\", "").replace("\\{", "").replace("\\}", ""):
        depth += (char == "{") - (char == "}")
        deepest = max(deepest, depth)
    return deepest


def _cap(value: int) -> int:
    return min(value, MAX_SHARD_NAMES + 1)


def expand_all(items: Iterable[str], key: str) -> list[str]:
    """expand() over a list of patterns, each file once, in order, at most MAX_SHARD_NAMES in all."""
    found: dict[str, None] = {}
    for item in items:
        found.update(dict.fromkeys(expand(item, key)))
        if len(found) > MAX_SHARD_NAMES:
            raise DataError(
                f"{key}: names more than {MAX_SHARD_NAMES:,} shard files, the most one setting may name; refused"
            )
    return list(found)
