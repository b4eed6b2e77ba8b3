"""What every console script shares: user mistakes become one `error: ...` line and exit status 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from cnntrain.commands.state import COMMAND
from cnntrain.errors import Interrupted, UserError

DEBUG_ENV = "CNNTRAIN_DEBUG"  # set to 1 to see the full traceback of any error


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report(message: str) -> None:
    """The one line a user sees for a mistake of theirs (line breaks the user typed are shown escaped)."""
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def one_line(text: str) -> str:
    """`text` on one line, as text: line breaks and terminal control characters from a file are shown escaped."""
    from cnntrain.reporting.text import plain

    return plain(text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is a UserError (one line) rather than usage text plus a line."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")

    def add_run_dir(self, overrides_help: str) -> None:
        """RUN_DIR and its KEY=VALUE dataset overrides, as every command on a finished run takes them."""
        self.add_argument("run_dir", type=Path, help="a run directory written by cnntrain")
        self.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)

    def add_checkpoint(self) -> None:
        """--checkpoint, as every command that loads a run's weights takes it."""
        self.add_argument("--checkpoint", default="best", help="best (default), last, or a path to a .pt file")


def run_command(command: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run a console script's body; report UserErrors as one line with their exit status."""
    encodable_streams()
    try:
        command(sys.argv[1:] if argv is None else argv)
    except UserError as err:
        if debugging():
            raise
        if isinstance(err, Interrupted):
            sys.stderr.write(f"{one_line(str(err))}\n")  # not a mistake: how to continue, without "error:"
        else:
            report(str(err))
        leave(err.exit_code)
    except KeyboardInterrupt as err:
        report("interrupted")
        leave(143 if str(err) == "SIGTERM" else 130)
    leave(0)


def encodable_streams() -> None:
    """stdout and stderr escape what their encoding cannot hold (a lone surrogate from a file name, a class name
    on a Latin-1 terminal) as `\udc80`, the escape cnntrain.reporting.text uses, instead of raising mid-line."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def in_process_only() -> None:
    """Say that this command started no other process (a sweep's launcher may have), so `leave` may skip
    Python's teardown."""
    COMMAND.in_process_only = True


def leave(code: int) -> None:
    """End the command with exit status `code`.

    With torch loaded, Python's own teardown takes most of a second on a small CPU (0.7 s measured here),
    and a command that ran in this process alone has nothing left to finalize: its files are closed and
    renamed, so after flushing the streams and logging it ends at once. Otherwise, sys.exit as usual.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if COMMAND.in_process_only and "torch" in sys.modules:
        logging.shutdown()
        os._exit(code)
    sys.exit(code)
