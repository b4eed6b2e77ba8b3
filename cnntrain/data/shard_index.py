"""A shard's index: its samples' keys, their raw label entries and its first image's member name, read from the
tar headers once and kept.

Indexing reads every member header of every shard (cnntrain.data.shard_tar's parser: the label entries are
read, the images sought over), and every run on shards starts with it. So the index is cached like decoded images
are: a small JSON file in the per-user cache folder (dataset.cache_dir; never beside the shards, where a shard
archive could ship one), keyed by the shard's absolute path, size, modification time, inode and change time (an
archive can restore a modification time, not a change time: a shard extracted or written again is indexed afresh)
and by the image and label keys asked for. Hashing the shards' bytes instead would read every shard whole, the
cost the cache avoids.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnntrain.data.image_cache import cache_base, fallback_cache_dir
from cnntrain.data.shard_tar import members
from cnntrain.errors import DataError, UserError
from cnntrain.files import atomic_write
from cnntrain.reading import MAX_MEMBER_BYTES

_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext

INDEX_VERSION = 3  # 2: keyed by inode and change time too. 3: each sample's image span
LABEL_BYTES = 1024  # a label entry holds a class index or name, never more


@dataclass(frozen=True)
class ShardIndex:
    keys: tuple[str, ...]  # each sample's __key__, in tar order
    labels: tuple[str, ...]  # each sample's label entry as text (parsed against the classes by the caller)
    first_image: str | None  # the member name of the shard's first image
    # each sample's image as (offset, size, index into image_keys); None: the stream walks the tar instead
    spans: tuple[tuple[int, int, int], ...] | None = None


def shard_index(path: str, image_keys: tuple[str, ...], label_key: str, cache_dir: str | None = None) -> ShardIndex:
    """The shard's index, from the cache when the shard is unchanged, else from its tar headers (then cached)."""
    place = _cache_file(path, image_keys, label_key, cache_dir)
    cached = _read(place)
    if cached is not None:
        return cached
    index = read_index(path, image_keys, label_key)
    text = json.dumps(
        {"keys": index.keys, "labels": index.labels, "first_image": index.first_image, "spans": index.spans}
    )
    try:
        atomic_write(place, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), root=cache_base(cache_dir))
    except (OSError, UserError):
        pass  # an unwritable cache folder indexes every run
    return index


def read_index(path: str, image_keys: tuple[str, ...], label_key: str) -> ShardIndex:
    """Walk the tar's member headers (cnntrain.data.shard_tar: images are sought over, not read; the label
    entries are read); every sample needs an image and a label. Each sample's image (the first of image_keys it
    has, as the stream picks it) is recorded as (offset, size, which key) when every sample's members lie
    together and once each (webdataset's grouping then agrees with the index): the stream then reads those
    spans without parsing a header."""

    def wanted(name: str) -> int:
        return LABEL_BYTES if split_name(name)[1].lower() == label_key else 0

    samples: dict[str, dict[str, Any]] = {}
    first_image, previous, regular = None, None, True
    for name, data, offset, size in members(path, wanted):
        prefix, suffix = split_name(name)
        if prefix is None or prefix.startswith("__"):
            continue
        if prefix != previous and prefix in samples:
            regular = False  # a key met again after another: grouped otherwise by webdataset
        previous = prefix
        entries = samples.setdefault(prefix, {})
        suffix = suffix.lower()
        if suffix in entries:
            regular = False  # webdataset refuses a duplicate: the stream walks the tar and says so
        if suffix == label_key:
            entries[suffix] = data or b""
        elif suffix in image_keys:
            entries[suffix] = (offset, size, image_keys.index(suffix))
            first_image = first_image or name
        else:
            entries[suffix] = True
    labels, spans = [], []
    for key, entries in samples.items():
        if not any(k in entries for k in image_keys):
            raise DataError(f"shard {path}, sample {key}: no image ({', '.join(image_keys)}; dataset.image_key)")
        if label_key not in entries:
            raise DataError(f"shard {path}, sample {key}: no label '{label_key}' (dataset.label_key)")
        labels.append(entries[label_key].decode("utf-8", errors="replace"))
        spans.append(next(entries[k] for k in image_keys if k in entries))
    return ShardIndex(tuple(samples), tuple(labels), first_image, tuple(spans) if regular else None)


def read_member(path: str, name: str) -> bytes:
    """One member's bytes (the first image, for the input shape)."""
    for found, data, _, _ in members(path, lambda member: MAX_MEMBER_BYTES if member == name else 0):
        if found == name and data is not None:
            return data
    raise DataError(f"cannot read {name} in shard {path}: no such member")


def split_name(name: str) -> tuple[str | None, str | None]:
    """A member name's sample key and suffix (everything after the first dot of the last path part), as
    webdataset's base_plus_ext splits it."""
    if "\n" in name:  # the pattern's "." stops at a line end: let it decide
        match = _NAME.match(name)
        return (match.group(1), match.group(2)) if match else (None, None)
    start = name.rfind("/") + 1
    dot = name.find(".", start)
    return (name[:dot], name[dot + 1 :]) if dot > start else (None, None)


def _cache_file(path: str, image_keys: tuple[str, ...], label_key: str, cache_dir: str | None) -> Path:
    shard = Path(path)
    stat = shard.stat()
    text = json.dumps(
        {
            "version": INDEX_VERSION,
            "shard": str(shard.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "ctime_ns": stat.st_ctime_ns,
            "inode": stat.st_ino,
            "image_keys": list(image_keys),
            "label_key": label_key,
        }
    )
    name = f"shard-{hashlib.sha256(text.encode()).hexdigest()[:20]}.json"
    return fallback_cache_dir(shard.parent, cache_dir) / name


def _read(place: Path) -> ShardIndex | None:
    """A cached index, or None when there is none or it is not one (torn, foreign: indexed again)."""
    if not place.is_file():
        return None
    try:
        data = json.loads(place.read_text(encoding="utf-8"))
        keys, labels, first = data["keys"], data["labels"], data["first_image"]
        if (
            isinstance(keys, list)
            and isinstance(labels, list)
            and len(keys) == len(labels)
            and all(isinstance(v, str) for v in keys + labels)
            and (first is None or isinstance(first, str))
        ):
            return ShardIndex(tuple(keys), tuple(labels), first, _spans(data.get("spans"), len(keys)))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _spans(spans: Any, count: int) -> tuple[tuple[int, int, int], ...] | None:
    """A cached index's image spans when they are what read_index writes (else None: the tar is walked)."""
    if not isinstance(spans, list) or len(spans) != count:
        return None
    ok = all(
        isinstance(span, list) and len(span) == 3 and all(type(v) is int and v >= 0 for v in span) for span in spans
    )
    return tuple(tuple(span) for span in spans) if ok else None
