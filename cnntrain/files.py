"""Writing files so that a reader never sees half of one, and never through a link someone else planted: every
file a run leaves goes through here.

A run directory, a checkpoint folder or a dataset may come from someone else, and a symbolic link inside it could
point anywhere. So a write names the folder it must stay inside (`root`: the run directory, a cache folder; by
default the file's own folder, which the caller chose), every folder between `root` and the file is created here,
and an existing one that is a link resolving outside `root` is refused with one line (UnsafePathError, exit 2).
The file itself is never written through: an atomic write renames a fresh temp file (created O_EXCL|O_NOFOLLOW)
over the name, which replaces a link rather than following it; an append opens with O_NOFOLLOW, so a linked log
is refused.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cnntrain.disk import raise_if_disk
from cnntrain.errors import UnsafePathError, UserError, first_line


def atomic_write(path: Path, write: Callable[[Path], object], *, root: Path | None = None) -> None:
    """Call write(tmp_path), then rename over `path`: a kill mid-write never leaves a torn file, and nothing is
    written outside `root` (default: path's own folder). A full or read-only disk leaves the old file as it was
    and becomes an OutputError naming `path` (cnntrain.disk)."""
    tmp: str | None = None
    try:
        folder = safe_folder(path.parent, root)
        # mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW: the temp name cannot be a planted link
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        write(Path(tmp))
        os.replace(tmp, folder / path.name)
    except Exception as err:  # torch.save reports a failed write as a RuntimeError raised while handling it
        raise_if_disk(err, path, written=_size(tmp))
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str, *, root: Path | None = None) -> None:
    """atomic_write for a text file (JSON, CSV, YAML)."""
    # backslashreplace: a lone surrogate (from a file name, a JSON escape) is written as `\udc80`, the escape
    # cnntrain.reporting.text shows it as, rather than failing the whole file
    atomic_write(
        path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="backslashreplace", newline=""), root=root
    )


def open_append(path: Path, *, root: Path | None = None) -> TextIO:
    """`path` opened to append text (train.log, metrics.csv), created if missing; a link or anything but a regular
    file there is refused (UnsafePathError), so a log never grows somewhere else."""
    folder = safe_folder(path.parent, root)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(folder / path.name, flags, 0o666)
    except OSError as err:
        if os.path.islink(folder / path.name):
            raise UnsafePathError(
                f"{path} is a symbolic link; cnntrain appends to no file through a link (remove the link)"
            ) from None
        raise_if_disk(err, path)
        raise UnsafePathError(f"cannot append to {path}: {first_line(err)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; cnntrain appends only to regular files (remove it)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace", newline="")


def safe_folder(folder: Path, root: Path | None = None) -> Path:
    """`folder`, created (with its parents up to `root`) if missing, after checking that no folder between `root`
    and it is a link that resolves outside `root`, nor anything but a folder. `root` itself is the caller's
    choice (a user's own links above it are theirs to make); default: `folder` itself."""
    root = folder if root is None else root
    try:
        relative = folder.relative_to(root)
    except ValueError:
        raise UnsafePathError(f"{folder} is outside {root}; cnntrain writes only inside it") from None
    root.mkdir(parents=True, exist_ok=True)
    real_root = os.path.realpath(root)
    current = root
    for part in relative.parts:
        if part == "..":
            raise UnsafePathError(f"{folder} climbs out of {root} ('..'); cnntrain writes only inside it")
        current = current / part
        try:
            os.mkdir(current)
            continue
        except FileExistsError:
            pass
        mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            target = os.path.realpath(current)
            if os.path.commonpath([real_root, target]) != real_root:
                raise UnsafePathError(
                    f"{current} is a symbolic link to {target}, outside {root}; cnntrain writes "
                    f"only inside {root} (remove the link)"
                )
            mode = os.stat(current).st_mode
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(f"{current} is not a folder; cnntrain needs a folder there (remove it)")
    return folder


def refuse_links_out(root: Path, depth: int = 2) -> None:
    """UnsafePathError for the first symbolic link within `depth` levels of `root` that resolves outside it: a run
    directory someone else made is checked whole before a resume writes into it (its logs, checkpoints, Hydra's
    .hydra/), so it fails in one line before any work, not halfway."""
    real_root = os.path.realpath(root)
    folders = [root]
    for _ in range(depth):
        below = []
        for folder in folders:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([real_root, target]) != real_root:
                        raise UnsafePathError(
                            f"{entry.path} is a symbolic link to {target}, outside {root}; cnntrain "
                            f"writes nothing through a link out of a run directory (remove it)"
                        )
                elif entry.is_dir(follow_symlinks=False):
                    below.append(Path(entry.path))
        folders = below


def open_regular(path: Path) -> io.BufferedReader:
    """`path` opened to read bytes, only if it is a regular file: a FIFO, a device or a socket given as an image or
    a label file would block or never end. It is checked with stat before opening, and opened O_NONBLOCK in case
    it is swapped meanwhile. Raises FileNotFoundError, or UserError naming the path."""
    raw = io.FileIO(regular_fd(path), "rb")
    raw.name = str(path)
    return _Reader(raw)


def regular_fd(path: Path) -> int:
    """open_regular as a bare file descriptor (the caller closes it): the cheapest way to read many small files."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{path} is {_kind_of_file(mode)}, not a regular file; cnntrain reads only regular files")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; cnntrain reads only regular files")
    os.set_blocking(fd, True)
    return fd


class _Reader(io.BufferedReader):
    """A file opened by open_regular, shown as its path (as Pillow's and other messages show a file opened by name)."""

    def __repr__(self) -> str:
        return repr(self.name)


def _kind_of_file(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def _size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path is not None else 0
    except OSError:
        return 0


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def read_yaml(path: Path, *, fix: str = "restore it from a copy of the run") -> Any:
    """A YAML file as plain lists and dicts (None when blank), read as OmegaConf reads Hydra's files, or a UserError
    naming the file (and the line, when the parser gives one) and ending in `fix`: a hand-edited or torn file is
    the user's to fix, not a traceback."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not path.is_file():
        raise UserError(f"{path} not found; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
        return OmegaConf.to_container(OmegaConf.load(io.StringIO(text)), resolve=False) if text.strip() else None
    except yaml.YAMLError as err:
        raise yaml_error(path, err, fix) from None
    except (OSError, ValueError, OmegaConfBaseException) as err:  # unreadable, not UTF-8, a bare number
        raise UserError(f"cannot read {path}: {first_line(err)}; {fix}") from None


def yaml_error(path: Path, err: Exception, fix: str) -> UserError:
    """The one line for a YAML syntax error: the file, the line when the parser gives one, the problem, `fix`."""
    return UserError(f"{_yaml_where(path, err)}: not valid YAML ({_yaml_problem(err)}); {fix}")


def kind_of(value: Any) -> str:
    """'a mapping', 'a list', 'a string', ... : how a message names the type of a value the user wrote."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "nothing (null)"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _yaml_where(path: Path, err: Exception) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f"{path} line {mark.line + 1}" if mark is not None else str(path)


def _yaml_problem(err: Exception) -> str:
    problem = getattr(err, "problem", None) or first_line(err)
    return str(problem).strip()
