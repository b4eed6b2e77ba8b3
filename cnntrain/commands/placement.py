"""Where each job of a parallel sweep runs: its own GPU(s), or its own share of the CPU cores.

Hydra's joblib launcher (hydra/launcher=local_parallel) runs n_jobs jobs at once but leaves them all on GPU 0
and on every core. Here each running job leases one of n_jobs slots (a lock file in the sweep directory, held
by the job's process and released by the system when it ends, however it ends), and the slot decides:

- on a CUDA machine, the GPUs the job sees (CUDA_VISIBLE_DEVICES): trainer.devices of them, and
  sweep.jobs_per_gpu jobs share a GPU when asked (small nets use a few percent of a large one);
- on the CPU, the cores it runs on (its affinity mask, which its threads and any ranks it starts inherit).

A job whose process has already initialised CUDA for another GPU (joblib reuses its workers) runs in a fresh
worker process, so it sees only its own GPU(s). Ray and SLURM give each job its resources themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOTS_DIR = ".slots"  # in the sweep directory: one lock file per slot


@dataclass(frozen=True)
class Placement:
    slot: int
    gpus: tuple[int, ...] | None = None  # visible GPUs (indices among the machine's), None on the CPU
    cores: tuple[int, ...] | None = None  # CPU cores, None when the job keeps them all


def gpus_for_slot(slot: int, gpu_count: int, devices: int, jobs_per_gpu: int) -> tuple[int, ...]:
    """The GPUs of a slot: consecutive groups of `devices` GPUs, each group shared by `jobs_per_gpu` slots;
    more slots than the machine holds wrap around (the GPUs are then shared further)."""
    groups = max(1, gpu_count // devices)
    group = (slot // jobs_per_gpu) % groups
    return tuple((group * devices + i) % gpu_count for i in range(devices))


def cores_for_slot(slot: int, slots: int, cores: list[int]) -> tuple[int, ...]:
    """A slot's contiguous share of the cores (at least one)."""
    if slots >= len(cores):
        return (cores[slot % len(cores)],)
    lo, hi = len(cores) * slot // slots, len(cores) * (slot + 1) // slots
    return tuple(cores[lo:hi])


@contextlib.contextmanager
def job_slot(sweep_dir: Path, slots: int, job_num: int) -> Iterator[int]:
    """Lease a free slot for as long as the job runs (the first free one from job_num's, else wait for it)."""
    folder = sweep_dir / SLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    order = [(job_num + i) % slots for i in range(slots)]
    handles = {}
    try:
        for slot in order:
            handle = (folder / f"{slot}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handles[slot] = handle
            yield slot
            return
        slot = order[0]
        handles[slot] = (folder / f"{slot}.lock").open("a")
        fcntl.flock(handles[slot], fcntl.LOCK_EX)
        yield slot
    finally:
        for handle in handles.values():
            handle.close()


def parallel_slots(hydra_cfg: Any) -> int:
    """How many jobs the sweep's launcher runs at once on this machine: joblib's n_jobs (-1: one per core)."""
    launcher = hydra_cfg.launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else os.cpu_count() or 1


@contextlib.contextmanager
def placed(cfg: Any, hydra_cfg: Any) -> Iterator[Placement | None]:
    """Run the body with this job placed in its slot (None when jobs run one at a time)."""
    slots = parallel_slots(hydra_cfg)
    if slots < 2:
        yield None
        return
    with job_slot(Path(hydra_cfg.sweep.dir), slots, int(hydra_cfg.job.num)) as slot:
        placement = place(slot, slots, cfg.trainer.devices, cfg.sweep.jobs_per_gpu, _gpu_count(cfg))
        with _applied(placement):
            yield placement


def place(
    slot: int, slots: int, devices: int, jobs_per_gpu: int, gpu_count: int, cores: list[int] | None = None
) -> Placement:
    if gpu_count > 0:
        return Placement(slot, gpus=gpus_for_slot(slot, gpu_count, devices, jobs_per_gpu))
    return Placement(slot, cores=cores_for_slot(slot, slots, sorted(cores or _all_cores())))


_gpus_seen: list[int] = []


def _gpu_count(cfg: Any) -> int:
    """GPUs this job may be placed on: those the sweep sees, when the job runs on CUDA. Counted once per
    process, before any job's mask (a worker that ran a job keeps the CUDA it initialised then)."""
    if cfg.device in ("cpu", "mps"):
        return 0
    if not _gpus_seen:
        import torch

        _gpus_seen.append(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return _gpus_seen[0]


def needs_fresh_process(placement: Placement | None) -> bool:
    """A GPU job in a process whose CUDA is already initialised (for another job's GPU) must start anew."""
    if placement is None or placement.gpus is None:
        return False
    import torch

    return torch.cuda.is_initialized()


def _all_cores() -> set[int]:
    """Every core of the machine (a worker may still carry the mask of the job it ran before)."""
    return set(range(os.cpu_count() or 1))


@contextlib.contextmanager
def _applied(placement: Placement) -> Iterator[None]:
    """Set the job's GPUs or cores, and put back what was there after it."""
    saved_mask = os.sched_getaffinity(0)
    saved_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        if placement.cores is not None:
            os.sched_setaffinity(0, placement.cores)
        if placement.gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, _physical(placement.gpus, saved_visible)))
        yield
    finally:
        os.sched_setaffinity(0, saved_mask)
        if saved_visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_visible


def _physical(gpus: tuple[int, ...], visible: str | None) -> list[str]:
    """Indices among the GPUs the sweep was given (its own CUDA_VISIBLE_DEVICES) as that variable spells them."""
    if not visible:
        return [str(g) for g in gpus]
    names = [name.strip() for name in visible.split(",") if name.strip()]
    return [names[g] for g in gpus]
