"""Where the jobs of a parallel sweep run: the GPU and core assignment, checked without GPUs, and the slot
leases that keep two running jobs off the same slot."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cnntrain.commands.placement import (
    Placement,
    _physical,
    cores_for_slot,
    gpus_for_slot,
    job_slot,
    parallel_slots,
    place,
)


@pytest.mark.parametrize(
    ("gpus", "devices", "per_gpu", "expected"),
    [
        (4, 1, 1, [(0,), (1,), (2,), (3,)]),  # one job per GPU
        (2, 1, 3, [(0,), (0,), (0,), (1,), (1,), (1,)]),  # three small jobs share each GPU
        (4, 2, 1, [(0, 1), (2, 3)]),  # DDP jobs of 2 GPUs each
        (8, 4, 2, [(0, 1, 2, 3), (0, 1, 2, 3), (4, 5, 6, 7), (4, 5, 6, 7)]),
        (2, 1, 1, [(0,), (1,), (0,), (1,)]),  # more jobs than GPUs: they wrap around
    ],
)
def test_gpus_for_each_slot(gpus, devices, per_gpu, expected):
    assert [gpus_for_slot(slot, gpus, devices, per_gpu) for slot in range(len(expected))] == expected


def test_cores_are_split_into_disjoint_shares():
    cores = list(range(16))
    shares = [cores_for_slot(slot, 3, cores) for slot in range(3)]
    assert [len(s) for s in shares] == [5, 5, 6]
    assert sorted(c for share in shares for c in share) == cores
    assert [cores_for_slot(slot, 4, [0, 1]) for slot in range(4)] == [(0,), (1,), (0,), (1,)]


def test_place_prefers_gpus_and_falls_back_to_cores():
    assert place(1, 2, 1, 1, gpu_count=2) == Placement(1, gpus=(1,))
    assert place(1, 2, 1, 1, gpu_count=0, cores=[0, 1, 2, 3]) == Placement(1, cores=(2, 3))


def test_gpus_are_named_as_the_sweep_saw_them():
    """A sweep started with CUDA_VISIBLE_DEVICES=4,6 gives its slot 1 the machine's GPU 6."""
    assert _physical((1,), "4,6") == ["6"]
    assert _physical((0, 1), None) == ["0", "1"]


def test_parallel_slots_come_from_the_joblib_launcher():
    joblib = OmegaConf.create(
        {"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}}
    )
    basic = OmegaConf.create({"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}})
    assert parallel_slots(joblib) == 3
    assert parallel_slots(basic) == 1


def _hold(sweep_dir: str, slots: int, job_num: int, queue: multiprocessing.Queue, seconds: float) -> None:
    with job_slot(Path(sweep_dir), slots, job_num) as slot:
        queue.put(slot)
        time.sleep(seconds)


def test_running_jobs_never_share_a_slot(tmp_path):
    """Job 2 would start on slot 0 (2 % 2), but job 0 holds it: job 2 takes the free slot 1. When a job's
    process ends, however it ends, its slot is free again."""
    queue = multiprocessing.get_context("spawn").Queue()
    context = multiprocessing.get_context("spawn")
    first = context.Process(target=_hold, args=(str(tmp_path), 2, 0, queue, 3.0))
    first.start()
    assert queue.get(timeout=30) == 0
    second = context.Process(target=_hold, args=(str(tmp_path), 2, 2, queue, 0.0))
    second.start()
    assert queue.get(timeout=30) == 1
    second.join(30)
    first.kill()
    first.join(30)
    with job_slot(tmp_path, 2, 0) as slot:
        assert slot == 0
