"""Errors a user can cause.

Every subclass of UserError is reported by the CLI as one line on stderr and exit status 2,
so raising one is the whole job of code that detects a user mistake.
"""

import difflib
from collections.abc import Iterable


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first non-empty line (its type's name when it has none):
    every message we show a user is one line, whatever the library below wrote."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when none is close: the hint in every error."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key_message(full_key: str, allowed: list[str]) -> str:
    """One sentence for a key the schema does not know, with the closest known key."""
    parent, _, leaf = full_key.rpartition(".")
    prefix = f"{parent}." if parent else ""
    close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.5)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    where = f"keys of {parent}" if parent else "top-level keys"
    return f"unknown config key '{full_key}'{hint}; {where}: {', '.join(allowed)}"


class UserError(Exception):
    """A mistake in the user's command, config or data: reported as one line, exit status 2."""

    exit_code = 2


class ConfigError(UserError):
    """A bad key, type or value in the composed config."""


class ModelConfigError(UserError):
    """A layer list that cannot be built: unknown layer, bad argument, or shapes that do not fit."""


class DataError(UserError):
    """Dataset files missing, unreadable or inconsistent."""


class UnsafePathError(UserError):
    """A write that would leave the folder it belongs in (a planted symbolic link), or a file that is not what
    cnntrain may read or append to (a FIFO, a device)."""


class DeviceError(UserError):
    """A requested device that this machine does not have."""


class CheckpointError(UserError):
    """A checkpoint file that is missing, corrupt or not ours."""


class OutputError(UserError, OSError):
    """An output the disk refuses (full, read-only, over quota): the message names the file and what it needs.
    Still an OSError, so a writer that falls back elsewhere when a folder refuses it (a data cache) still does."""


class RankFailed(UserError):
    """One rank of a data-parallel run failed with an error of the program or the machine (out of memory, a
    killed process): the whole run stops, with this one line naming the rank."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C or SIGTERM: the run stopped cleanly; the message says how to resume it."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Stopped(Interrupted):
    """A stop signal (SIGTERM, SIGUSR1, SIGUSR2): last.pt holds the step the run stopped at; the exit status is
    128 + the signal's number."""
