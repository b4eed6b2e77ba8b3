"""Data-parallel runs on torch.distributed (gloo on this CPU): one run directory, exact metrics, failures.

Every run here is real: `cnntrain trainer.devices=2` starts two worker processes with torch's elastic
launcher, `torchrun` starts them itself, submitit's local executor starts them as the tasks of a job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnntrain.commands import evaluate, train
from cnntrain.data.augment import build_augment
from cnntrain.data.batches import batch_share, num_batches
from cnntrain.data.containers import TensorSplit, iterate_batches, shard
from cnntrain.training.distributed import Ranks, fresh_process_threads, ranks_from_env, threads_per_rank

from helpers import TINY_RUN, cli_env, cnntrain_command, run_main

RUN = (*TINY_RUN, "trainer.progress=false", "trainer.early_stopping.enabled=false")


def numbered(n: int) -> TensorSplit:
    return TensorSplit(
        torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 4, 4).clone(), torch.arange(n)
    )


# -- the sharded data path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch, world", [(103, 10, 2), (100, 10, 3), (64, 64, 4), (9, 4, 2)])
def test_rank_shares_cover_each_global_batch_once(n, batch, world):
    """Each global batch is the one-process batch; the ranks' shares are disjoint and cover it, in order.
    A last batch with fewer images than ranks is left out of the epoch (9 % 4 = 1 < 2 ranks)."""
    whole = [
        labels
        for _, labels in iterate_batches(numbered(n), batch, shuffle=True, generator=torch.Generator().manual_seed(5))
    ]
    shares = [
        list(
            iterate_batches(
                numbered(n), batch, shuffle=True, generator=torch.Generator().manual_seed(5), rank=r, world=world
            )
        )
        for r in range(world)
    ]
    count = num_batches(n, batch, False, world)
    assert all(len(s) == count for s in shares)
    assert count == len(whole) - (1 if 0 < n % batch < world else 0)
    for b in range(count):
        joined = torch.cat([shares[r][b][1] for r in range(world)])
        assert torch.equal(joined, whole[b])
        sizes = [len(shares[r][b][1]) for r in range(world)]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_evaluation_shards_are_contiguous_and_unpadded():
    split = numbered(11)
    parts = [shard(split, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p.labels for p in parts]), split.labels)
    assert [len(p) for p in parts] == [3, 4, 4]


def test_each_rank_augments_its_share_as_one_process_would():
    """The ranks draw the whole global batch's random numbers, so the shares put together are the one-process
    augmentation of the batch, and every rank's generator ends in the same state."""
    images = torch.randint(0, 255, (10, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(10)
    augment = build_augment([{"translate": 2}, "hflip", {"random_erasing": 0.5}, "randaugment"])
    alone, _ = augment(images, labels, torch.Generator().manual_seed(1))
    generators = [torch.Generator().manual_seed(1) for _ in range(3)]
    pieces = []
    for rank, gen in enumerate(generators):
        lo, hi = batch_share(10, rank, 3)
        pieces.append(augment(images[lo:hi], labels[lo:hi], gen, 10, lo)[0])
    assert torch.equal(torch.cat(pieces), alone)
    states = [g.get_state() for g in generators]
    assert all(torch.equal(s, states[0]) for s in states)


def test_ranks_from_the_environment_and_their_threads(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_env() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ranks = ranks_from_env()
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.enabled, ranks.main) == (3, 4, 1, True, False)
    assert threads_per_rank(ranks) == max(1, len(os.sched_getaffinity(0)) // 2)
    assert threads_per_rank(Ranks()) == fresh_process_threads()


def test_a_lone_process_held_to_some_cores_takes_as_many_threads():
    """A parallel sweep's job runs on its share of the cores (an affinity mask): one thread per core of the mask."""
    every = os.sched_getaffinity(0)
    if len(every) < 2:
        pytest.skip("one core: no share smaller than the whole machine")
    os.sched_setaffinity(0, {min(every)})
    try:
        assert threads_per_rank(Ranks()) == 1
    finally:
        os.sched_setaffinity(0, every)


def test_slurm_environment_maps_to_ranks_and_rendezvous(monkeypatch):
    """A 2-node, 4-task SLURM job as submitit reads it: task 3 is rank 3, local rank 1 on the second node; the
    rendezvous is the first node of the job's node list."""
    from cnntrain.training.launch import cluster_ranks

    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "4",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(name, "stale")  # whatever a previous step left is replaced (and put back after the test)
    monkeypatch.delenv("MASTER_PORT")
    ranks = cluster_ranks()
    assert (ranks.rank, ranks.world, ranks.local_rank) == (3, 4, 1)
    assert os.environ["MASTER_ADDR"] == "gpu07"
    assert os.environ["LOCAL_WORLD_SIZE"] == "2"
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert cluster_ranks() is None  # one task: a plain run


# -- whole runs ---------------------------------------------------------------------------------------------
# The 2-rank vs 1-process comparison trains on synthetic_data_root (its tolerances are in images of its 300
# test images), as does the diverging run (the batch where the loss first turns nan depends on the data); the other
# runs check processes and messages, not numbers, and train on the small set.


def cnntrain(
    cwd: Path, data_root: Path, *args: str, command: list[str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(command or cnntrain_command()), *args],
        cwd=cwd,
        env=cli_env(data_root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def two_and_one(tmp_path_factory, synthetic_data_root) -> tuple[Path, Path]:
    """The same run on 2 gloo ranks and in one process (same global batch of 64); each in its own folder,
    with Hydra's default run directory, so the count of run directories is checked as users would make them."""
    dirs = []
    for devices in (2, 1):
        cwd = tmp_path_factory.mktemp(f"devices{devices}")
        if devices == 1:  # by cnntrain's own main in this process: a subprocess would spend seconds importing torch
            with pytest.MonkeyPatch.context() as mp:
                result = run_main(train.main, RUN, cwd, mp, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
        else:
            result = cnntrain(cwd, synthetic_data_root, *RUN, f"trainer.devices={devices}")
        assert result.returncode == 0, result.stderr
        runs = [p.parent for p in (cwd / "outputs").rglob("summary.json")]
        assert len(runs) == 1, runs
        dirs.append(runs[0])
    return dirs[0], dirs[1]


@pytest.mark.slow
def test_two_rank_run_writes_one_run_directory_with_exact_test_metrics(two_and_one, synthetic_data_root):
    """summary.json of the 2-rank run says how it ran; its test accuracy and confusion matrix are those of
    evaluating the same weights in one process (cnntrain-eval), to the image. The test loss is a sum of
    float32 per-batch means whose batches split differently on 2 ranks (oneDNN picks kernels by batch size and
    CPU kind), so it agrees to float32's rounding, not bit for bit: about 2e-7 relative on AVX-512 CPUs."""
    run_dir, _ = two_and_one
    found = summary(run_dir)
    assert found["parallel"] == {"world_size": 2, "backend": "gloo", "batch_size": 64, "batch_size_per_rank": 32}
    assert (run_dir / "rank-1.log").is_file() and "rank 1 of 2 (gloo)" in (run_dir / "rank-1.log").read_text()
    assert "rank 1" not in (run_dir / "train.log").read_text()
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2  # header + one row per epoch, once
    with pytest.MonkeyPatch.context() as mp:  # cnntrain-eval's main, in this process
        result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], run_dir, mp,
                          CNNTRAIN_DATA_ROOT=str(synthetic_data_root))  # fmt: skip
    assert result.returncode == 0, result.stderr
    alone = json.loads((run_dir / "eval_summary.json").read_text())
    assert alone["test"]["acc"] == found["test"]["acc"]
    assert alone["confusion_matrix"] == found["confusion_matrix"]
    assert alone["test"]["loss"] == pytest.approx(found["test"]["loss"], rel=1e-6)


@pytest.mark.slow
def test_two_ranks_follow_one_process_with_the_same_global_batch(two_and_one):
    """cnn2 has no dropout and no batch norm, the ranks see the images of each global batch that one process
    sees (same permutation) and average their gradients to the global batch's mean: the runs differ only by
    float summation order (two partial gradient sums, then an all-reduce). That rounding (~1e-7 relative per
    step) compounds over 2 x 19 Adam steps, so losses agree to 1e-3 and accuracies to a few images of 300."""
    two, one = (json.loads((d / "summary.json").read_text()) for d in two_and_one)
    rows_two = (two_and_one[0] / "metrics.csv").read_text().splitlines()
    rows_one = (two_and_one[1] / "metrics.csv").read_text().splitlines()
    assert len(rows_two) == len(rows_one) == 3
    for epoch in ("final_epoch",):
        for key in ("train/loss", "val/loss"):
            assert two[epoch][key] == pytest.approx(one[epoch][key], abs=1e-3)
        for key in ("train/acc", "val/acc"):
            assert two[epoch][key] == pytest.approx(one[epoch][key], abs=0.01)
    assert two["test"]["acc"] == pytest.approx(one["test"]["acc"], abs=0.01)
    from cnntrain.reporting.run_dir import read_steps

    steps_two, steps_one = (read_steps(d / "steps.csv") for d in two_and_one)
    assert len(steps_two) == len(steps_one) > 0
    assert steps_two[0]["train/loss_step"] == pytest.approx(steps_one[0]["train/loss_step"], rel=1e-6)
    assert [s["lr"] for s in steps_two] == [s["lr"] for s in steps_one]


def _children(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc)."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
                pending.append(int(entry.name))
    return found


def _alive(pids: list[int], grace: float = 10) -> list[str]:
    """Those of pids still running after a grace period (zombies awaiting their parent's exit do not count)."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for pid in pids:
            try:
                stat = (Path("/proc") / str(pid) / "stat").read_text()
                cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(f"{pid}: {cmdline}")
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _writes_to(pid: int, log: Path) -> bool:
    """Whether the process's stdout is `log` (rank K > 0 prints to its rank-K.log)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/1") == str(log)
    except OSError:
        return False


def _start_long_run(tmp_path: Path, data_root: Path, run_dir: Path) -> subprocess.Popen:
    """A 2-rank run with many epochs, in its own process group (as a terminal's Ctrl-C reaches the whole group)."""
    return subprocess.Popen(
        [*cnntrain_command(), *RUN, "trainer.epochs=200", "trainer.devices=2", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=cli_env(data_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_a_single_process_resumes_the_run(tmp_path, small_data_root):
    run_dir = tmp_path / "run"
    process = _start_long_run(tmp_path, small_data_root, run_dir)
    try:
        _wait_for(run_dir / "checkpoints" / "last.pt", process)
        workers = _children(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert f"cnntrain resume={run_dir}" in stderr and "Traceback" not in stderr
    assert not _alive(workers), "a rank outlived Ctrl-C"
    stopped_at = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["epoch"]

    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    checkpoint["config"]["trainer"]["epochs"] = stopped_at + 2  # finish soon: two more epochs
    torch.save(checkpoint, run_dir / "checkpoints" / "last.pt")
    with pytest.MonkeyPatch.context() as mp:  # the single process: cnntrain's main, in this one
        result = run_main(train.main, [f"resume={run_dir}", "trainer.devices=1"], tmp_path, mp,
                          CNNTRAIN_DATA_ROOT=str(small_data_root))  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = summary(run_dir)
    assert found["status"] == "done" and found["parallel"]["world_size"] == 1
    assert found["epochs_run"] == stopped_at + 2


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_one_line_naming_it(tmp_path, small_data_root):
    run_dir = tmp_path / "run"
    process = _start_long_run(tmp_path, small_data_root, run_dir)
    try:
        _wait_for(run_dir / "checkpoints" / "last.pt", process)
        workers = _children(process.pid)
        rank_one = [pid for pid in workers if _writes_to(pid, run_dir / "rank-1.log")]
        assert len(rank_one) == 1, workers
        started = time.monotonic()
        os.kill(rank_one[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0] == f"error: rank 1 died: killed by SIGKILL (its log: {run_dir / 'rank-1.log'})"
    assert took < 30
    assert not _alive(workers), "a rank outlived the failed run"
    torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)  # whole, never torn
    assert summary(run_dir)["status"] == "failed"


@pytest.mark.slow
def test_torchrun_starts_the_ranks_of_one_run(tmp_path, small_data_root):
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun) if torchrun.exists() else sys.executable,
        *([] if torchrun.exists() else ["-m", "torch.distributed.run"]),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "cnntrain",
    ]
    result = cnntrain(tmp_path, small_data_root, *RUN, "trainer.epochs=1", command=command)
    assert result.returncode == 0, result.stderr
    runs = [p.parent for p in (tmp_path / "outputs").rglob("summary.json")]
    assert len(runs) == 1, runs
    assert summary(runs[0])["parallel"]["world_size"] == 2
    assert (runs[0] / "rank-1.log").is_file()


@pytest.mark.slow
def test_a_slurm_job_with_two_tasks_trains_one_run_on_two_ranks(tmp_path, small_data_root):
    """submitit's local executor runs the job as two tasks, with the variables it sets on SLURM: the tasks
    become ranks 0 and 1 of one run."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = cnntrain(
        tmp_path,
        small_data_root,
        "-m",
        "hydra/launcher=slurm_local",
        "hydra.launcher.tasks_per_node=2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *RUN,
        "trainer.epochs=1",
    )
    assert result.returncode == 0, result.stderr
    job = tmp_path / "sweep" / "0"
    assert summary(job)["parallel"]["world_size"] == 2
    assert (job / "rank-1.log").is_file()


@pytest.mark.slow
def test_data_parallel_jobs_of_a_parallel_sweep_each_get_their_own_ranks(tmp_path, small_data_root):
    """Two 2-rank jobs at once (joblib): each holds a slot of the cores (a lock file in .slots and an affinity mask
    of half the cores, shared by its ranks), starts its own process group on its own port, and writes its own run
    directory."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    result = cnntrain(
        tmp_path,
        small_data_root,
        "-m",
        "hydra/launcher=local_parallel",
        *RUN,
        "trainer.epochs=1",
        "trainer.devices=2",
        "optimizer.lr=1e-3,3e-4",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    threads = max(1, len(os.sched_getaffinity(0)) // 2 // 2)  # the job's half of the cores, shared by 2 ranks
    for job in ("0", "1"):
        found = summary(tmp_path / "sweep" / job)
        assert found["status"] == "done" and found["parallel"]["world_size"] == 2
        assert (tmp_path / "sweep" / job / "rank-1.log").is_file()
        assert f", {threads} CPU threads," in (tmp_path / "sweep" / job / "train.log").read_text()
    assert sorted(p.name for p in (tmp_path / "sweep" / ".slots").iterdir()) == ["0.lock", "1.lock"]
    assert (tmp_path / "sweep" / "sweep_summary.csv").read_text().count(",done,") == 2


@pytest.mark.slow
def test_ranks_do_not_outlive_a_killed_cnntrain(tmp_path, small_data_root):
    """SIGKILL leaves the launching process no time to stop its ranks: the system ends them with it."""
    run_dir = tmp_path / "run"
    process = _start_long_run(tmp_path, small_data_root, run_dir)
    try:
        _wait_for(run_dir / "checkpoints" / "last.pt", process)
        workers = _children(process.pid)
        assert len(workers) >= 2
        process.kill()
        process.wait(30)
        assert not _alive(workers), "a rank outlived its killed launcher"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_mistake_found_on_a_rank_is_one_line_with_its_exit_status(tmp_path, synthetic_data_root):
    result = cnntrain(
        tmp_path,
        synthetic_data_root,
        *RUN,
        "trainer.devices=2",
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "hydra.run.dir=run",
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "training loss became nan in epoch 1" in lines[0]
    assert summary(tmp_path / "run")["status"] == "failed"


@pytest.mark.parametrize("env", [{}, {"OMP_NUM_THREADS": "1"}])
def test_a_lone_process_takes_the_thread_count_torch_starts_with(env):
    """Set explicitly (so a run from Python after torch.set_num_threads computes as the command does), and the
    same number torch picks by itself in a fresh process."""
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        text=True,
        capture_output=True,
        env={**os.environ, **env},
        check=True,
    )
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cnntrain.training.distributed import fresh_process_threads;print(fresh_process_threads())",
        ],
        text=True,
        capture_output=True,
        env={**os.environ, **env},
        check=True,
    )
    assert int(child.stdout) == int(fresh.stdout)
