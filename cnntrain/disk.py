"""A full, read-only or over-quota disk under an output: one line naming the file and what it needs.

Every file a run leaves goes through cnntrain.files.atomic_write (or, for the appended train.log and CSV
rows, through `disk_errors`); the OS error of a write that cannot happen becomes an OutputError, so the run
ends with `error: cannot write PATH: no space left on device (needs ~N MB free, M MB free now)` and exit
status 2, never a traceback. atomic_write's temp file is what fails, so the previous file stays whole.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnntrain.errors import OutputError

# The OS errors that say the disk cannot take a file (not that the program is wrong), and how to say them.
DISK_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for this file system or the process's file-size limit (ulimit -f)",
}
if hasattr(errno, "EDQUOT"):  # POSIX
    DISK_ERRNOS[errno.EDQUOT] = "disk quota exceeded"


def raise_if_disk(err: BaseException, path: Path, written: int = 0) -> None:
    """Raise the OutputError for `err` when it is, or was raised while handling, a disk's refusal (see
    DISK_ERRNOS); otherwise return. `written` is how many bytes the failed write had put down (its temp
    file's size) when it stopped."""
    if isinstance(err, OutputError):  # already said, naming its own file
        raise err
    code = disk_errno(err)
    if code is not None:
        error = OutputError(output_message(path, code, written))
        error.errno = code
        raise error from None


def disk_errno(err: BaseException | None) -> int | None:
    """The errno of the first disk refusal in `err`'s chain (a library may wrap the OSError), or None."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return err.errno
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Writes to `path` inside this block that the disk refuses become OutputError (appends, logs)."""
    try:
        yield
    except OSError as err:
        raise_if_disk(err, path)
        raise


def torch_save(payload: Any, path: Path) -> None:
    """torch.save through a Python file: a write the disk refuses then raises its OSError (given a path, torch's
    own writer reports only a RuntimeError, 'iostream error'), so callers see what the disk said."""
    import torch

    with Path(path).open("wb") as f:
        torch.save(payload, f)


def output_message(path: Path, code: int, written: int = 0) -> str:
    """'cannot write PATH: WHY (what it needs)': about the size of the file it replaces (or of what the failed
    write had put down, when larger), or, for a new file, more than what the failed write had put down."""
    why = DISK_ERRNOS[code]
    if code == errno.EROFS:
        return f"cannot write {path}: {why}; write the run to a writable folder (hydra.run.dir=...)"
    if code == errno.EFBIG:
        return f"cannot write {path}: {why}; raise the limit or write the run elsewhere (hydra.run.dir=...)"
    old, free = _size(path), _free(path)
    if old:  # the new file is about the size of the one it replaces
        need = f"needs ~{_mb(max(old, written))} free"
    else:
        need = f"needs more than {_mb(written)} free" if written else "needs more free space"
    now = f", {_mb(free)} free now" if free is not None else ""
    return f"cannot write {path}: {why} ({need}{now}); free some space or write the run elsewhere (hydra.run.dir=...)"


def _mb(size: int) -> str:
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{max(1, round(size / 1e3))} KB"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _free(path: Path) -> int | None:
    """Free bytes on the disk that holds `path` (its nearest existing folder), or None when unknown."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(os.fspath(folder)).free
    except OSError:
        return None
