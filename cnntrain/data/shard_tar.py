"""A shard's tar members, read by a header parser of our own in large sequential reads.

Python's tarfile builds a TarInfo object per member and reads through small buffered calls; webdataset's reader
adds a generator stage and a dict per file on top. A shard of small images holds two members per sample, so
that per-member Python was a large part of a streamed epoch (docs/data.md gives the profile). Here the file is
read READ_BYTES at a time (a member that is skipped, as indexing skips images, is sought over when it lies
beyond the buffer) and each 512-byte header is parsed from the buffer: the name (ustar prefix, GNU long names
and pax `path`/`size` records as tarfile reads them), the size (octal or base-256) and the type; the checksum is
checked as tarfile checks it. Regular files are given; directories, links and pax globals are passed over. The
bounds are reading.py's: a regular file opened by open_bounded, no member over MAX_MEMBER_BYTES, and a tar that
ends inside a header or a member is an error, not a shorter shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from cnntrain.errors import DataError, UserError, first_line
from cnntrain.reading import MAX_MEMBER_BYTES, MAX_SHARD_BYTES, open_bounded, too_large

BLOCK = 512
READ_BYTES = 4 << 20  # one sequential read
_REGULAR = (b"0", b"\0", b"7")  # tarfile's REGTYPE, AREGTYPE, CONTTYPE
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g", b"K", b"V", b"M", b"N")  # links, devices, folders, globals


class _Buffer:
    """Sequential reads of READ_BYTES from a raw file, with take(n) and skip(n)."""

    def __init__(self, raw) -> None:
        self.raw, self.data, self.at = raw, b"", 0
        self.start = 0  # the file offset of data[0]
        self.size = os.fstat(raw.fileno()).st_size

    @property
    def position(self) -> int:
        return self.start + self.at

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            rest, parts, have = self.data[self.at :], [], len(self.data) - self.at
            parts.append(rest)
            while have < n:
                chunk = self.raw.read(max(READ_BYTES, n - have))
                if not chunk:
                    break
                parts.append(chunk)
                have += len(chunk)
            self.start += self.at
            self.data, self.at = b"".join(parts), 0
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out

    def skip(self, n: int) -> None:
        left = len(self.data) - self.at
        if n <= left:
            self.at += n
            return
        self.start += len(self.data) + n - left
        if self.start > self.size:  # a member's data or padding runs past the end: cut off
            raise ValueError("unexpected end of data")
        self.raw.seek(n - left, os.SEEK_CUR)
        self.data, self.at = b"", 0


def _number(field: bytes) -> int:
    """A header number: octal text, or GNU base-256 (first byte 0x80 or 0xff), as tarfile's nti reads it."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - (256 ** (len(field) - 1)) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax header ("LENGTH key=value\\n" ...)."""
    records, at = {}, 0
    while at < len(data) and data[at : at + 1] != b"\0":
        space = data.index(b" ", at)
        length = int(data[at:space])
        if length <= 0:
            raise ValueError("bad pax record")
        key, _, value = data[space + 1 : at + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at += length
    return records


Member = tuple[str, bytes | None, int, int]  # name, data (None: not read), its offset in the file, its size


def members(path: str, wanted: Callable[[str], int] | None = None) -> Iterator[Member]:
    """(name, data, offset, size) of each regular file of the tar at `path`, in order (offset: of its data in
    the file). `wanted(name)` says how many bytes of a member to read (0: none, data None; a member is skipped by a
    seek), None reads every member whole. A tar that is not one, is cut off, or holds a member over
    MAX_MEMBER_BYTES is one DataError line naming the shard."""
    try:
        handle = open_bounded(path, MAX_SHARD_BYTES, "shard")  # a regular file (a FIFO would block)
    except (OSError, UserError) as err:
        raise DataError(f"cannot read shard {path}: {first_line(err)}") from None
    with handle:
        try:
            yield from _walk(_Buffer(handle.raw), path, wanted)
        except (ValueError, OSError) as err:
            raise DataError(f"cannot read shard {path}: {first_line(err)}") from None


def _walk(buffer: _Buffer, path: str, wanted: Callable[[str], int] | None) -> Iterator[Member]:
    long_name: str | None = None
    pax: dict[str, str] = {}
    first = True
    while True:
        header = buffer.take(BLOCK)
        if not header or header == bytes(BLOCK):
            if first and not header:
                raise ValueError("empty file")
            return
        if len(header) < BLOCK:
            raise ValueError("truncated header (the shard is cut off)")
        try:
            stored = _number(header[148:156])
        except ValueError:
            stored = -1
        if stored != sum(header) - sum(header[148:156]) + 256 and stored != _signed_sum(header):
            raise ValueError("bad checksum" if not first else "not a tar file (its first header does not check)")
        first = False
        kind, size = header[156:157], _number(header[124:136])
        name = _text(header[0:100])
        prefix = _text(header[345:500]) if header[345] else ""
        if prefix and kind not in (b"L", b"K"):
            name = f"{prefix}/{name}"
        if "size" in pax:
            size = int(pax["size"])
        if size < 0:
            raise ValueError("negative member size")
        padded = -(-size // BLOCK) * BLOCK
        if kind in (b"L", b"x"):
            if size > MAX_MEMBER_BYTES:
                raise DataError(too_large(f"shard {path}: member", name, MAX_MEMBER_BYTES))
            data = buffer.take(padded)
            if len(data) < padded:
                raise ValueError("unexpected end of data")
            data = data[:size]
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif b" path=" in data or b" size=" in data:  # webdataset's writer adds an mtime record to each member
                pax = _pax(data)
            continue
        if long_name is not None:
            name, long_name = long_name, None
        if "path" in pax:
            name = pax["path"]
        pax = {}
        regular = kind in _REGULAR and not (kind == b"\0" and name.endswith("/"))
        if not regular:
            if kind not in _SKIPPED and kind not in _REGULAR:
                raise ValueError(f"member {name}: unsupported tar member type {kind!r}")
            buffer.skip(padded)
            continue
        if size > MAX_MEMBER_BYTES:  # read whole below: bounded here
            raise DataError(too_large(f"shard {path}: member", name, MAX_MEMBER_BYTES))
        offset = buffer.position
        if wanted is not None and wanted(name) <= 0:
            buffer.skip(padded)
            yield name, None, offset, size
            continue
        count = size if wanted is None else min(size, wanted(name))
        data = buffer.take(count)
        if len(data) < count:
            raise ValueError("unexpected end of data")
        buffer.skip(padded - count)
        yield name, data, offset, size


def _signed_sum(header: bytes) -> int:
    """The checksum as some old tars wrote it (bytes as signed chars), which tarfile accepts too."""
    signed = sum(b - 256 if b > 127 else b for b in header[:148] + header[156:])
    return signed + 256


def spans(path: str, wanted: list[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes at each (offset, size) of `wanted` (ascending, as an index lists a shard's images), read in blocks
    of READ_BYTES: no header is parsed. A shard that ends before a span is one DataError line."""
    try:
        handle = open_bounded(path, MAX_SHARD_BYTES, "shard")
    except (OSError, UserError) as err:
        raise DataError(f"cannot read shard {path}: {first_line(err)}") from None
    with handle:
        raw, data, start = handle.raw, b"", 0
        for offset, size in wanted:
            if not 0 <= size <= MAX_MEMBER_BYTES or offset < 0:
                raise DataError(f"cannot read shard {path}: its index names a member of {size:,} bytes at {offset:,}")
            if offset < start or offset + size > start + len(data):
                try:
                    raw.seek(offset)
                    data, start = raw.read(max(READ_BYTES, size)), offset
                except OSError as err:
                    raise DataError(f"cannot read shard {path}: {first_line(err)}") from None
                if len(data) < size:
                    raise DataError(
                        f"cannot read shard {path}: it ends before a member its index names (changed since it "
                        f"was indexed?)"
                    )
            yield data[offset - start : offset - start + size]
