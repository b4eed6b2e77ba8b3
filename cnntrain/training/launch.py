"""Where a job's processes come from: this one, N started here by torch's elastic launcher, or a launcher's.

`train_job` is what the command runs once Hydra has made the run directory. The config was composed and
checked once, in this process; every rank receives that frozen config and the run directory, so a
data-parallel run has exactly one run directory whichever way it was started:

- `cnntrain trainer.devices=N ...`: N workers started here by torch.distributed's elastic launcher (the engine
  `torchrun` is built on), with a rendezvous on a free local port, so jobs of a sweep never share one;
- `torchrun --nproc_per_node=N -m cnntrain ...`: rank 0 runs the command, the other ranks wait for it
  (`follow_rank_zero`) and receive the job over the process group;
- a SLURM job with several tasks (hydra/launcher=slurm, through submitit): submitit's view of SLURM's
  environment gives the ranks and the rendezvous address (`cluster_ranks`).

A rank that fails ends the whole run (the launcher stops the others) with one line naming the rank.

The run (the data and model code) and submitit (an optional extra) are imported inside the functions that need
them, so a process that only starts and watches the ranks never loads the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnntrain.errors import Interrupted, RankFailed, Stopped, UserError

MONITOR_SECONDS = 0.5  # how often the elastic agent looks at its workers: a dead rank stops the run this fast
SHUTDOWN_SECONDS = 120  # after a stop signal, how long the ranks have to reach a step and save before SIGKILL
SIGNALS_VARIABLE = "TORCHELASTIC_SIGNALS_TO_HANDLE"
FORWARDED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def train_job(
    cfg: Any,
    run_dir: Path,
    *,
    description: Any = None,
    checkpoint: dict[str, Any] | None = None,
    destinations: list[str] | tuple[str, ...] = (),
    started: float | None = None,
    fresh_process: bool = False,
) -> float:
    """Train one job (`checkpoint`: a last.pt to resume from, with the command's `destinations` overrides) on
    the processes its config and environment ask for; returns the monitored metric. `fresh_process`: even one
    device trains in a new process (one that reads the job's CUDA_VISIBLE_DEVICES, see
    cnntrain.commands.placement)."""
    job = {
        "config": _plain(cfg),
        "run_dir": str(run_dir),
        "resume": checkpoint is not None,
        "destinations": list(destinations),
        "description": description.as_dict() if description is not None else None,
        "wall_started": time.time() - (time.perf_counter() - started) if started is not None else time.time(),
        "alone": cfg.trainer.devices == 1,
    }
    ranks = launched_ranks()
    if ranks is not None:
        return _join(ranks, job)
    if cfg.trainer.devices > 1 or fresh_process:
        return launch(cfg.trainer.devices, job)
    from cnntrain.training.run import resume_run, run

    if checkpoint is not None:
        return resume_run(run_dir, checkpoint, devices=cfg.trainer.devices, destinations=destinations)
    return run(cfg, run_dir, started=started, description=description)


def launched_ranks() -> Any:
    """This process's place among a launcher's ranks (torchrun's or a SLURM job's); None when it runs alone."""
    from cnntrain.training.distributed import ranks_from_env

    return ranks_from_env() or cluster_ranks()


def follow_rank_zero() -> bool:
    """For ranks other than 0 of a torchrun or SLURM start: wait for rank 0's job and train it. False when this
    process is rank 0 or alone (it runs the command itself)."""
    ranks = launched_ranks()
    if ranks is None or ranks.main:
        return False
    _join(ranks, None)
    return True


def cluster_ranks() -> Any:
    """Ranks from submitit's reading of a multi-task job (SLURM's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
    the node list; submitit's local executor has its own variables). It exports the rendezvous variables
    torch.distributed reads: the first node of the job as the address, a port derived from the job id."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks < 2:
        return None
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    from cnntrain.training.distributed import ranks_from_env

    return ranks_from_env()


def launch(nprocs: int, job: dict[str, Any]) -> float:
    """Start `nprocs` ranks on this machine with torch's elastic launcher and wait for them; a failed rank
    stops the others and becomes one error naming it."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    for name in [*prefixes, *logging.root.manager.loggerDict]:  # torch sets its modules' levels one by one
        if name.startswith(prefixes):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # we report a failure ourselves, in one line
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=f"cnntrain-{uuid.uuid4().hex}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        max_restarts=0,
        monitor_interval=MONITOR_SECONDS,
        start_method="spawn",
        shutdown_timeout=SHUTDOWN_SECONDS,
        signals_to_handle=",".join(FORWARDED_SIGNALS),
    )
    try:
        with _standard_start_method(), _forwarded_signals():
            results = elastic_launch(config, _rank_main)(job)
    except ChildFailedError as err:
        raise _failure(err, Path(job["run_dir"])) from None
    except SignalException as err:
        from cnntrain.training.run import interrupted_message

        raise Interrupted(interrupted_message(Path(job["run_dir"]), int(err.sigval)), 128 + int(err.sigval)) from None
    return float(results[0])


@contextlib.contextmanager
def _forwarded_signals() -> Iterator[None]:
    """While the ranks run, the elastic agent turns these signals into a shutdown that sends the same signal to
    every rank (and SIGKILL after SHUTDOWN_SECONDS): the ranks save at their next step and stop. The agent
    installs its handlers and leaves them; ours are put back afterwards."""
    previous = {name: signal.getsignal(getattr(signal, name)) for name in FORWARDED_SIGNALS}
    variable = os.environ.get(SIGNALS_VARIABLE)  # the launcher sets it for the agent and leaves it
    try:
        yield
    finally:
        for name, handler in previous.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)
        if variable is None:
            os.environ.pop(SIGNALS_VARIABLE, None)
        else:
            os.environ[SIGNALS_VARIABLE] = variable


@contextlib.contextmanager
def _standard_start_method() -> Iterator[None]:
    """Spawned workers take their parent's multiprocessing start method; a job running in a joblib worker has
    loky's, which a fresh interpreter does not know. Use spawn's while the workers start."""
    method = multiprocessing.get_start_method(allow_none=True)
    if method in (None, "spawn", "fork", "forkserver"):
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rank_main(job: dict[str, Any]) -> float:
    """Each worker the elastic launcher starts runs this (a job of one device alone, without a process group)."""
    _die_with_parent()
    if job["alone"]:
        from cnntrain.training.distributed import SINGLE

        return _train_rank(SINGLE, job)
    return _join(launched_ranks(), job)


def _die_with_parent() -> None:
    """Ask Linux to end this worker if the cnntrain process that launched it dies (even by SIGKILL, which
    leaves it no time to stop its workers), so no rank outlives its run."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _join(ranks: Any, job: dict[str, Any] | None) -> float:
    """Join the process group, take rank 0's job (ranks started by torchrun arrive without one), train it."""
    from cnntrain.training import distributed

    ranks = distributed.start(ranks)
    try:
        job = distributed.share_object(job)
        try:
            result = _train_rank(ranks, job)
        except Stopped:
            distributed.wait_for_all()  # every rank stopped at the same step; rank 0 may still write last.pt
            raise
        distributed.wait_for_all()  # no rank tears down while rank 0 still writes the report (only on success:
        return result  # after a failure the others may never come, and the launcher ends them)
    finally:
        distributed.stop()


def _train_rank(ranks: Any, job: dict[str, Any]) -> float:
    from omegaconf import OmegaConf

    from cnntrain.config.validate import validate
    from cnntrain.data.description import DataDescription
    from cnntrain.reporting.run_dir import RunDir
    from cnntrain.training.run import resume_run, run

    run_dir = Path(job["run_dir"])
    if not ranks.main:
        _print_to(RunDir(run_dir).rank_log(ranks.rank))
    if job["resume"]:
        return resume_run(run_dir, ranks=ranks, devices=ranks.world, destinations=job["destinations"])
    description = DataDescription.from_dict(job["description"]) if job["description"] else None
    started = time.perf_counter() - (time.time() - job["wall_started"])
    return run(
        validate(OmegaConf.create(job["config"])), run_dir, started=started, description=description, ranks=ranks
    )


def _print_to(log: Path) -> None:
    """Send this process's stdout and stderr (Python's and the C libraries') to a rank's log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)  # a planted link is refused
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _failure(err: Any, run_dir: Path) -> UserError:
    """The first rank's failure as the error that rank raised (a UserError keeps its class and exit status),
    or as RankFailed naming the rank, its error and its log."""
    from cnntrain.reporting.run_dir import RunDir

    rank, failure = err.get_first_failure()
    where = f" (its log: {RunDir(run_dir).rank_log(rank)})" if rank else ""
    if failure.exitcode < 0 or not isinstance(failure.message, dict):
        return RankFailed(f"rank {rank} died: {_signal_text(failure)}{where}")
    kind, _, text = str(failure.message.get("message", "")).partition(": ")
    user_error = _user_error_class(kind)
    if user_error is not None and issubclass(user_error, Interrupted):  # a rank raises, not returns: a worker that
        return user_error(text, _stop_status(text))  # returned would wait for an agent shutting down
    if user_error is not None:
        error = user_error.__new__(user_error)
        UserError.__init__(error, f"rank {rank}: {text}" if rank else text)
        return error
    return RankFailed(f"rank {rank} failed: {kind}: {text.splitlines()[0] if text else ''}{where}")


def _stop_status(text: str) -> int:
    """The exit status of a stop whose line a rank wrote: 128 + the signal it names ('stopped by SIGUSR1'), 130
    for Ctrl-C."""
    named = re.match(r"stopped by (SIG[A-Z0-9]+)", text)
    return 128 + int(signal.Signals[named.group(1)]) if named and named.group(1) in signal.Signals.__members__ else 130


def _signal_text(failure: Any) -> str:
    if failure.exitcode < 0:
        return f"killed by {failure.signal_name()}"
    return f"exit status {failure.exitcode}"


def _user_error_class(name: str) -> type[UserError] | None:
    """The UserError subclass of that name (the modules that define them are imported by the run module)."""
    import cnntrain.training.run  # noqa: F401

    pending = [UserError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def _plain(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)
