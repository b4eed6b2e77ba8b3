"""Writing files so that a reader never sees half of one: every file a run leaves goes through here."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnntrain.disk import raise_if_disk
from cnntrain.errors import UserError, first_line


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp_path), then rename over `path`: a kill mid-write never leaves a torn file. A full or
    read-only disk leaves the old file as it was and becomes an OutputError naming `path` (cnntrain.disk)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        write(Path(tmp))
        os.replace(tmp, path)
    except Exception as err:  # torch.save reports a failed write as a RuntimeError raised while handling it
        raise_if_disk(err, path, written=_size(tmp))
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """atomic_write for a text file (JSON, CSV, YAML)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


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
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(type(value),
                                                                                        type(value).__name__)


def _yaml_where(path: Path, err: Exception) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f"{path} line {mark.line + 1}" if mark is not None else str(path)


def _yaml_problem(err: Exception) -> str:
    problem = getattr(err, "problem", None) or first_line(err)
    return str(problem).strip()
