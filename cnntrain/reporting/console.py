"""What the user sees: rich output on the terminal, mirrored as plain text into train.log.

Training code calls a few methods (`print`, `epochs(...)`, `start_epoch`, `advance`, `end_epoch`);
how they are drawn (a live table with progress bars on a terminal, one display that updates in place in a
Jupyter notebook, one plain line per epoch in a pipe or a CI log) is decided here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cnntrain.config.names import EPOCH_COLUMNS
from cnntrain.disk import DISK_ERRNOS, disk_errors
from cnntrain.files import open_append

PLAIN_PROGRESS_ENV = "CNNTRAIN_PLAIN_PROGRESS"
"""Set (by the Python API in a notebook) for the processes a run starts: the ranks of a data-parallel run write
to the notebook's output, where a live display would arrive as a stream of redrawn frames, not in place."""


PIPED_WIDTH = 120
"""The width of output that goes to a file or a pipe (a CI log, `| tee`): rich's default there is 80 columns,
which cuts the model table; a terminal keeps its own width, and COLUMNS, when set, wins."""


def output_console() -> Console:
    """The console a command prints to: the terminal's width, or PIPED_WIDTH when the output is not a terminal."""
    console = Console(highlight=False)
    if not console.is_terminal and not console.is_jupyter and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def format_metric(key: str, value: Any) -> str:
    """One spelling of each metric for the table, the log and the summary printout."""
    if value is None:
        return "-"
    if key.endswith(("acc", "acc5")):
        return f"{100 * value:.2f}%"
    if key == "lr":
        return f"{value:.2e}"
    if key == "seconds":
        return f"{value:.1f}"
    if key == "epoch":
        return str(value)
    return f"{value:.4f}"


def format_macs(macs: int) -> str:
    """Multiply-adds in three significant digits (512, 523K, 2.29M, 1.81G): one spelling wherever they are shown."""
    if macs < 1000:
        return str(macs)
    value, unit = float(macs), ""
    for next_unit in "KMGTPE":
        if float(f"{value:.3g}") < 1000:
            break
        value, unit = value / 1000, next_unit
    return f"{value:.3g}{unit}"


class Reporter:
    """Prints to the terminal and mirrors everything, without colour, into a log file."""

    def __init__(self, log_path: Path | None = None, *, console: Console | None = None) -> None:
        self.console = console or output_console()
        self._log_path = log_path
        self._log: TextIO | None = open_append(log_path) if log_path else None
        self._file_console = (
            Console(
                file=self._log, width=120, no_color=True, force_terminal=False, force_jupyter=False, highlight=False
            )  # not jupyter: in a notebook rich would show the log's copy, not write it
            if self._log
            else None
        )

    def print(self, *objects: Any, log_only: bool = False) -> None:
        if not log_only:
            self.console.print(*objects, soft_wrap=isinstance(objects[0], str))
        if self._file_console is not None:
            with disk_errors(self._log_path):
                self._file_console.print(*objects, soft_wrap=isinstance(objects[0], str))
                self._log.flush()

    def epochs(
        self, total_epochs: int, *, progress: bool, title: str = "", columns: tuple[str, ...] = EPOCH_COLUMNS
    ) -> EpochDisplay:
        return EpochDisplay(self, total_epochs, progress=progress, title=title, columns=columns)

    def close(self) -> None:
        """Close train.log; a disk that refused it has been reported by the print that failed."""
        if self._log is not None:
            log, self._log, self._file_console = self._log, None, None
            try:
                log.close()
            except OSError as err:
                if err.errno not in DISK_ERRNOS:
                    raise


class EpochDisplay:
    """A table that gains one row per epoch, with live progress bars under it on a terminal."""

    REFRESH_SECONDS = 0.25  # how often the live loss is read back (a device sync on GPUs)

    def __init__(
        self,
        reporter: Reporter,
        total_epochs: int,
        *,
        progress: bool,
        title: str,
        columns: tuple[str, ...] = EPOCH_COLUMNS,
    ) -> None:
        self.reporter = reporter
        self.columns = columns
        self.total_epochs = total_epochs
        self.live_mode = progress and reporter.console.is_terminal and not os.environ.get(PLAIN_PROGRESS_ENV)
        self.notebook = NotebookLines() if progress and reporter.console.is_jupyter else None
        self.table = Table(title=title or None, title_justify="left")
        for name in columns:
            self.table.add_column(name, justify="right")
        self.table.add_column("best", justify="center")
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=reporter.console,
            transient=True,
        )
        self._live: Live | None = None
        self._task: Any = None
        self._last_refresh = 0.0

    def __enter__(self) -> EpochDisplay:
        if self.live_mode:
            self._live = Live(
                Group(self.table, self.progress), console=self.reporter.console, refresh_per_second=8, transient=False
            )
            self._live.__enter__()
        self.reporter.print(_line(self.columns, self.columns), log_only=self.live_mode or self.notebook is not None)
        if self.notebook is not None:
            self.notebook.start(_line(self.columns, self.columns))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.table)
            self._live.__exit__(*exc)
            self._live = None
        if self.notebook is not None:
            self.notebook.status("")

    def start_phase(self, description: str, total: int) -> None:
        self._phase = (description, total)
        if not self.live_mode:
            return
        if self._task is not None:
            self.progress.remove_task(self._task)
        self._task = self.progress.add_task(description, total=total, info="")
        self._last_refresh = 0.0

    def advance(self, done: int, info: Callable[[], str] | None = None) -> None:
        """Move the bar; call `info()` (which may sync with the device) at most a few times a second."""
        now = time.monotonic()
        if self.notebook is not None and now - self._last_refresh >= self.REFRESH_SECONDS:
            description, total = self._phase
            self.notebook.status(f"{description} {done}/{total} {info() if info is not None else ''}".rstrip())
            self._last_refresh = now
        if not self.live_mode:
            return
        fields = {}
        if info is not None and now - self._last_refresh >= self.REFRESH_SECONDS:
            fields["info"] = info()
            self._last_refresh = now
        self.progress.update(self._task, completed=done, **fields)

    def end_epoch(self, metrics: dict[str, Any], *, best: bool) -> None:
        cells = [format_metric(name, metrics.get(name)) for name in self.columns]
        self.table.add_row(*cells, "*" if best else "")
        line = _line(cells, self.columns) + (" *" if best else "")
        self.reporter.print(line, log_only=self.live_mode or self.notebook is not None)
        if self.notebook is not None:
            self.notebook.add(line)


class NotebookLines:
    """The epoch table in a notebook: one output that IPython updates in place (a line per epoch and one of
    progress), rather than a new output for every line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress = ""
        self._handle: Any = None

    def start(self, header: str) -> None:
        from IPython.display import display  # only in a notebook, where IPython is there

        self.lines = [header]
        self._handle = display(self._shown(), display_id=True)

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.progress = ""
        self._update()

    def status(self, text: str) -> None:
        self.progress = text
        self._update()

    def _update(self) -> None:
        if self._handle is not None:
            self._handle.update(self._shown())

    def _shown(self) -> Any:
        from IPython.display import Pretty  # only in a notebook, where IPython is there

        return Pretty("\n".join(self.lines + ([self.progress] if self.progress else [])))


def _line(cells: Any, columns: tuple[str, ...]) -> str:
    """A plain-text table line for logs and pipes: each column as wide as its header."""
    return " ".join(f"{cell:>{max(8, len(name))}}" for cell, name in zip(cells, columns))
