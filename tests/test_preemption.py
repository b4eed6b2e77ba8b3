"""Runs that survive, on real processes: stop signals and SIGKILL inside an epoch, resumed with
`cnntrain resume=RUN_DIR` to the uninterrupted run's numbers, in one process and on 2 ranks (gloo), and a
job of submitit's local executor that a pre-emption signal requeues and that then resumes itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_interruptions import SMALL, assert_same_run

from cnntrain.commands import train
from cnntrain.training.checkpoints import load_checkpoint

from helpers import cli_env, cnntrain_command, run_main

RUN = (*SMALL, "trainer.epochs=2", "trainer.checkpoint.every_steps=2", "trainer.early_stopping.enabled=false")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    from synthetic_idx import write_idx_dataset

    root = tmp_path_factory.mktemp("small_data")
    write_idx_dataset(root, "MNIST", n_train=400, n_test=100, seed=0)
    return root


def start(cwd: Path, root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*cnntrain_command(), *args],
        cwd=cwd,
        env=cli_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def reference_run(cwd: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The uninterrupted one-process run, by `cnntrain`'s own main in this process (a subprocess would spend its
    seconds importing torch); the runs it is compared with are the real processes."""
    result = run_main(train.main, [*RUN, "hydra.run.dir=reference"], cwd, monkeypatch, CNNTRAIN_DATA_ROOT=str(root))
    assert result.returncode == 0, result.stderr
    return cwd / "reference"


def wait_for_checkpoint_inside(
    run_dir: Path, process: subprocess.Popen, newer_than: int = 0, timeout: float = 240
) -> None:
    """Until last.pt is a checkpoint inside an epoch written after `newer_than` (st_mtime_ns)."""
    path = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the run ended first: {process.communicate()}"
        assert time.monotonic() < deadline, f"no checkpoint inside an epoch in {run_dir}"
        if path.exists() and path.stat().st_mtime_ns > newer_than and "in_epoch" in load_checkpoint(path):
            return
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            pending.extend(kids)
    return found


def process_with(pid: int, *, log: str = "", cmdline: bytes = b"") -> int:
    """The descendant of pid whose standard output goes to a file named `log` and whose command line holds
    `cmdline` (a rank other than 0 writes to its rank-N.log)."""
    for child in descendants(pid):
        try:
            output = os.readlink(f"/proc/{child}/fd/1")
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if output.endswith(log) and cmdline in command:
            return child
    raise AssertionError(f"no process writing to {log!r} with {cmdline!r} under {pid}")


def assert_stopped_line(stderr: str, name: str, run_dir: Path) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"stopped by {name}"), stderr
    assert lines[0].endswith(f"continue with: cnntrain resume={run_dir}")


def last_step(run_dir: Path) -> tuple[int, int]:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["in_epoch"]
    return state["epoch"], state["step"]


@pytest.mark.slow
def test_sigterm_then_sigkill_inside_epochs_then_resume_equals_the_uninterrupted_run(tmp_path, small_root, monkeypatch):
    process = start(tmp_path, small_root, *RUN, "hydra.run.dir=run")
    run_dir = tmp_path / "run"
    wait_for_checkpoint_inside(run_dir, process)
    process.send_signal(signal.SIGTERM)
    status, _, stderr = finish(process)
    assert status == 143
    assert_stopped_line(stderr, "SIGTERM", run_dir)
    stopped_at = last_step(run_dir)

    written = (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns
    resumed = start(tmp_path, small_root, "resume=run")
    wait_for_checkpoint_inside(run_dir, resumed, written)
    resumed.send_signal(signal.SIGKILL)
    assert resumed.wait() == -signal.SIGKILL
    assert last_step(run_dir) > stopped_at and not (run_dir / "summary.json").exists()

    resumed = run_main(train.main, ["resume=run"], tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(small_root))
    assert resumed.returncode == 0, resumed.stderr  # the last resume by cnntrain's main here: it only reads files
    assert "resuming in epoch " in resumed.stdout
    assert_same_run(run_dir, reference_run(tmp_path, small_root, monkeypatch))
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_two_ranks_stop_together_for_a_signal_to_one_rank_and_survive_sigkill(tmp_path, small_root):
    """SIGUSR1 to rank 1 alone: both ranks save the same step and the launcher exits 138; the resumed run is
    SIGKILLed after its next checkpoint inside an epoch; the second resume ends where 2 uninterrupted ranks do."""
    two = (*RUN, "trainer.devices=2")
    reference = start(tmp_path, small_root, *two, "hydra.run.dir=reference")
    process = start(tmp_path, small_root, *two, "hydra.run.dir=run")
    run_dir = tmp_path / "run"
    wait_for_checkpoint_inside(run_dir, process)
    rank_1 = process_with(process.pid, log="rank-1.log")
    os.kill(rank_1, signal.SIGUSR1)
    status, _, stderr = finish(process)
    assert status == 138, stderr
    assert_stopped_line(stderr, "SIGUSR1", run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["in_epoch"]
    assert saved["world"] == 2 and [r["sums"]["step"] for r in saved["ranks"]] == [saved["step"]] * 2

    written = (run_dir / "checkpoints" / "last.pt").stat().st_mtime_ns
    resumed = start(tmp_path, small_root, "resume=run")
    wait_for_checkpoint_inside(run_dir, resumed, written)
    resumed.send_signal(signal.SIGKILL)
    assert resumed.wait() == -signal.SIGKILL

    status, stdout, stderr = finish(start(tmp_path, small_root, "resume=run"))
    assert status == 0, stderr
    assert finish(reference)[0] == 0
    assert_same_run(run_dir, tmp_path / "reference")


@pytest.mark.slow
def test_a_signal_to_the_launcher_of_two_ranks_saves_and_exits_with_its_status(tmp_path, small_root):
    process = start(tmp_path, small_root, *RUN, "trainer.devices=2", "hydra.run.dir=run")
    wait_for_checkpoint_inside(tmp_path / "run", process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGUSR2)
    status, _, stderr = finish(process)
    assert status == 140, stderr
    assert time.monotonic() - signalled < 60, "the ranks stop at their next step, not at the launcher's deadline"
    assert_stopped_line(stderr, "SIGUSR2", tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["in_epoch"]["world"] == 2


@pytest.mark.slow
def test_a_preempted_submitit_job_saves_requeues_itself_and_resumes(tmp_path, small_root, monkeypatch):
    """hydra/launcher=slurm_local: the job's task gets SIGUSR2 (submitit's pre-emption signal, as SLURM sends
    it); the run saves at its next step, submitit's handler checkpoints the job (Hydra's launcher returns a
    DelayedSubmission) and requeues it, and the requeued job resumes from last.pt to the end."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = start(tmp_path, small_root, "-m", "hydra/launcher=slurm_local", *RUN, "hydra.sweep.dir=sweep")
    job = tmp_path / "sweep" / "0"
    wait_for_checkpoint_inside(job, sweep)
    task = process_with(sweep.pid, cmdline=b"submitit.core._submit")
    os.kill(task, signal.SIGUSR2)
    status, stdout, stderr = finish(sweep)
    assert status == 0, stderr
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs and "job 0: resuming in epoch " in logs, logs
    assert_same_run(job, reference_run(tmp_path, small_root, monkeypatch))
