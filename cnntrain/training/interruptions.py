"""When training stops or saves between epochs' ends: stop signals, checkpoints every N steps or minutes, and
the time budget.

SIGTERM, SIGUSR1 and SIGUSR2 (what SLURM and other schedulers send before a pre-emption or a time limit) only
set a flag while training runs; the loop looks at it after each optimizer step, writes last.pt there and stops
with exit status 128 + the signal's number and one line saying how to resume. The handlers are installed for
the run only (cnntrain.training.run) and the previous ones put back; a previous Python handler (submitit's
requeue, the command's own) then gets the signal too, after the checkpoint is safe. In a data-parallel run the
ranks agree after every step (one all-reduce of three numbers), so a signal to any rank stops all of them at the
same step, each with its state in the same last.pt.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from cnntrain.training.distributed import SINGLE, Ranks

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopRequested(Exception):
    """Raised inside the loop once a stop signal's checkpoint is written; fit turns it into Stopped."""

    def __init__(self, signum: int, epoch: int, step: int, batches: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.epoch, self.step, self.batches = signum, epoch, step, batches


class StopSignals:
    """A context that turns the stop signals into a flag (`received`: the first one's number, 0 for none)."""

    def __init__(self) -> None:
        self.received = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python takes handlers in the main thread only
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def pass_on(self, signum: int) -> None:
        """Give the signal to the handler that was there before training (after __exit__), when it is Python's
        code: submitit's checkpoint-and-requeue, for one. The default action (end the process) is not taken:
        the run ends by itself, with its own status."""
        handler = self.previous.get(signum)
        if callable(handler):
            try:
                handler(signum, None)
            except KeyboardInterrupt:  # a handler that stops the program (the command's): the run stops anyway
                pass

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            self.received = signum


@dataclass
class StepWatch:
    """Decides after each optimizer step whether to write last.pt, to stop for a signal, or to stop for the
    time budget; `save` writes last.pt at the current step (fit's closure)."""

    save: Callable[[Any], None]
    signals: StopSignals
    every_steps: int | None = None
    every_minutes: float | None = None
    time_limit: float | None = None  # seconds of training, counted over resumes
    spent: float = 0.0  # seconds trained before this process started
    ranks: Ranks = SINGLE
    started: float = field(default_factory=time.monotonic)
    time_up: bool = False

    def __post_init__(self) -> None:
        self.last_save = self.started

    def elapsed(self) -> float:
        """Seconds of training, this process's and earlier ones'."""
        return self.spent + time.monotonic() - self.started

    def after_step(self, progress: Any, epoch: int, step: int, last_of_epoch: bool) -> bool:
        """Called by the loop after optimizer step `step` (counted over epochs) of `epoch`, with the epoch's
        EpochProgress; True: end the epoch here (the budget is spent). Raises StopRequested after saving."""
        due = bool(self.every_steps) and step % self.every_steps == 0
        if self.every_minutes is not None and time.monotonic() - self.last_save >= 60 * self.every_minutes:
            due = True
        due, over, signum = self._agree(due, self._over(), self.signals.received)
        if signum:
            self.save(progress)
            raise StopRequested(signum, epoch, progress.step, progress.batches)
        if over:
            self.time_up = True
            return True
        if due and not last_of_epoch:  # an epoch's end writes last.pt anyway
            self.save(progress)
            self.last_save = time.monotonic()
        return False

    def after_epoch(self, epoch: int) -> int:
        """Called after an epoch's last.pt: the stop signal to act on now (0: none); notes a spent budget."""
        _, over, signum = self._agree(False, self._over(), self.signals.received)
        self.time_up = self.time_up or over
        return signum

    def _over(self) -> bool:
        return self.time_limit is not None and self.elapsed() >= self.time_limit

    def _agree(self, due: bool, over: bool, signum: int) -> tuple[bool, bool, int]:
        """The ranks' verdicts combined (any rank's clock or signal counts), so all act at the same step."""
        if not self.ranks.enabled:
            return due, over, signum
        flags = torch.tensor([int(due), int(over), signum], dtype=torch.int64)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return bool(flags[0]), bool(flags[1]), int(flags[2])


def stop_message(stop: StopRequested, run_dir: Path) -> str:
    """The one line a stop signal ends the run with."""
    name = signal.Signals(stop.signum).name
    where = (
        f"epoch {stop.epoch}, batch {stop.step} of {stop.batches}" if stop.batches else f"the end of epoch {stop.epoch}"
    )
    return f"stopped by {name}: checkpoints/last.pt holds {where}; continue with: cnntrain resume={run_dir}"


def stop_status(signum: int) -> int:
    """The exit status of a run stopped by a signal, as a shell reports a process ended by it: 128 + its number
    (SIGTERM 143, SIGUSR1 138, SIGUSR2 140)."""
    return 128 + signum
