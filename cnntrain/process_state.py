"""What a call of the Python API may change in the calling process, put back as it was when the call ends.

A command ends its process; an API call returns to a notebook that keeps going. Training goes through the
same code as the command (Hydra's job runner, the run's torch set-up), which changes process-wide things:
Hydra's global instance and job config, the logging handlers Hydra configures, the working directory and
environment a job may set (hydra.job.env_set), signal handlers, what the command keeps between its steps
(cnntrain.commands.state), and torch's threads, determinism flags, default dtype and global random state.
`preserved()` records them before the call and restores them after it, whether the call returned, raised a
UserError or was interrupted.

torch and Hydra are imported only inside the functions that save and put back their state, so the
API's first import stays light.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cnntrain.commands.state import COMMAND, CommandState


@contextmanager
def preserved(*, torch_state: bool = True) -> Iterator[None]:
    """Run the body, then put back the process state it changed (torch's too when `torch_state`)."""
    state = ProcessState.take(torch_state=torch_state)
    try:
        yield
    finally:
        state.restore()


@dataclass
class LoggerState:
    level: int
    handlers: list[logging.Handler]
    propagate: bool
    disabled: bool


@dataclass
class ProcessState:
    """One snapshot of everything `preserved` restores."""

    cwd: str
    argv: list[str]
    argv_list: list[str]
    environ: dict[str, str]
    signals: dict[int, Any]
    loggers: dict[str, LoggerState]
    logging_disable: int
    hydra: Any
    hydra_config: Any
    command: CommandState
    torch: dict[str, Any] | None = field(default=None)

    @classmethod
    def take(cls, *, torch_state: bool = True) -> ProcessState:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        return cls(
            cwd=os.getcwd(),
            argv=list(sys.argv),
            argv_list=sys.argv,
            environ=dict(os.environ),
            signals=_signal_handlers(),
            loggers=_loggers(),
            logging_disable=logging.root.manager.disable,
            hydra=GlobalHydra.instance().hydra,
            hydra_config=HydraConfig.instance().cfg,
            command=COMMAND.snapshot(),
            torch=_torch_settings() if torch_state else None,
        )

    def restore(self) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        sys.argv = self.argv_list  # the list object too: a command may have put a new one in its place
        sys.argv[:] = self.argv
        _restore_environ(self.environ)
        _restore_signals(self.signals)
        _restore_loggers(self.loggers)
        logging.disable(self.logging_disable)
        GlobalHydra.instance().clear()
        GlobalHydra.instance().hydra = self.hydra
        HydraConfig.instance().cfg = self.hydra_config
        COMMAND.restore(self.command)
        if self.torch is not None:
            _restore_torch(self.torch)


def _signal_handlers() -> dict[int, Any]:
    """The Python-level handler of every signal that has one (None: set outside Python, left alone)."""
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if handler is not None:
            handlers[sig] = handler
    return handlers


def _restore_signals(saved: dict[int, Any]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread can set handlers, so a call from another thread changed none
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def _loggers() -> dict[str, LoggerState]:
    loggers: dict[str, Any] = {"": logging.root, **logging.root.manager.loggerDict}
    return {
        name: LoggerState(log.level, list(log.handlers), log.propagate, log.disabled)
        for name, log in loggers.items()
        if isinstance(log, logging.Logger)
    }


def _restore_loggers(saved: dict[str, LoggerState]) -> None:
    """The loggers that existed before as they were; a logger made during the call loses the handlers the
    call's logging configuration gave it (cnntrain's, Hydra's) and keeps what its library set."""
    for name, log in [("", logging.root), *logging.root.manager.loggerDict.items()]:
        if not isinstance(log, logging.Logger):
            continue
        state = saved.get(name)
        if state is None:
            if name.startswith(("cnntrain", "hydra")):
                log.handlers = []
            continue
        log.setLevel(state.level)
        log.handlers = list(state.handlers)
        log.propagate = state.propagate
        log.disabled = state.disabled


def _restore_environ(saved: dict[str, str]) -> None:
    for key in [key for key in os.environ if key not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _torch_settings() -> dict[str, Any]:
    import torch

    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "default_dtype": torch.get_default_dtype(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "rng": torch.get_rng_state(),
    }


def _restore_torch(saved: dict[str, Any]) -> None:
    import torch

    if torch.get_num_threads() != saved["threads"]:
        torch.set_num_threads(saved["threads"])
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != (
        saved["deterministic"],
        saved["warn_only"],
    ):
        if "torch._inductor" in sys.modules:  # the public call also sets inductor's flag (see training.setup)
            torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
        else:
            torch._C._set_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
    torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]
    torch.set_default_dtype(saved["default_dtype"])
    torch.set_float32_matmul_precision(saved["matmul_precision"])
    torch.set_rng_state(saved["rng"])
