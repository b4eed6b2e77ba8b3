"""Unpacking the published .gz IDX files, bounded by what their own header announces.

An IDX file states its size up front (4 magic bytes, one big-endian uint32 per dimension, then exactly their
product of data bytes), so the unpacked size is known after 16 bytes: an archive whose header announces more
than MAX_IDX_BYTES is refused before anything is written, and unpacking stops as soon as the stream holds more
than announced. A 2 MB .gz can hold gigabytes of zeros; none of it reaches the disk.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

from cnntrain.errors import UserError, first_line
from cnntrain.files import atomic_write, open_regular

MAX_IDX_BYTES = 1 << 30  # 1 GiB unpacked: MNIST's largest file is 47 MB
CHUNK = 1 << 20


class _Refused(Exception):
    """Why an archive is not unpacked: its header, or more bytes than that header announced."""


def gunzip_idx(archive: Path, target: Path, dims: int) -> str | None:
    """Unpack `archive` into `target` (atomically, through a fresh temp file beside it: no planted `.part` file or
    link is ever followed); return why it failed, or None."""
    try:
        with open_regular(archive) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as src:
            atomic_write(target, lambda tmp: _copy_bounded(src, tmp, dims))
    except _Refused as err:
        return str(err)
    except (OSError, EOFError, zlib.error, UserError) as err:
        return first_line(err)
    return None


def announced_bytes(header: bytes, dims: int) -> int:
    """The whole file's size as an IDX header of unsigned bytes with `dims` dimensions states it."""
    if len(header) < 4 or header[:4] != bytes((0, 0, 0x08, dims)):
        found = header[:4].hex() if len(header) >= 4 else f"{len(header)} bytes"
        raise _Refused(f"it starts with {found}, not the IDX header 000008{dims:02x}")
    if len(header) < 4 + 4 * dims:
        raise _Refused(f"its IDX header is cut off after {len(header)} bytes")
    sizes = struct.unpack(f">{dims}I", header[4 : 4 + 4 * dims])
    return 4 + 4 * dims + math.prod(sizes)


def _copy_bounded(src: gzip.GzipFile, tmp: Path, dims: int) -> None:
    header = src.read(4 + 4 * dims)
    expected = announced_bytes(header, dims)
    if expected > MAX_IDX_BYTES:
        raise _Refused(f"its IDX header announces {expected:,} bytes, more than the {MAX_IDX_BYTES:,} allowed")
    left = expected - len(header)
    with open(tmp, "wb") as dst:
        dst.write(header)
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                break  # short: read_idx names the file and the missing bytes
            dst.write(chunk)
            left -= len(chunk)
    if src.read(1):
        raise _Refused(f"it unpacks to more than the {expected:,} bytes its IDX header announces")
