"""Interrupted runs: SIGKILL, Ctrl-C and SIGTERM, then `cnntrain resume=RUN_DIR` to the same result."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_run import read_rows, read_summary

from cnntrain.commands import train
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.run import resume_run, run

from helpers import run_main, run_stopped_in_epoch

THREE_EPOCHS = ("model=cnn2", "trainer.epochs=3", "trainer.batch_size=64", "trainer.progress=false", "threads=1")


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """A resumed run is compared with an uninterrupted one, whatever the data: the runs here train on the small set."""
    return small_data_root


def without_seconds(run_dir: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(run_dir)]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"cnntrain ended before {path} appeared: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(start_cli, tmp_path, monkeypatch, synthetic_data_root):
    killed = start_cli(*THREE_EPOCHS, "hydra.run.dir=killed")
    wait_for(tmp_path / "killed" / "checkpoints" / "last.pt", killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "summary.json").exists(), "killed before the run finished"
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["epoch"] < 3

    resumed = run_main(
        train.main, ["resume=killed"], tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root)
    )
    assert resumed.returncode == 0, resumed.stderr  # by cnntrain's main in this process: the killed run was real
    assert "resuming after epoch" in resumed.stdout
    reference = run_main(train.main, [*THREE_EPOCHS, "hydra.run.dir=reference"], tmp_path, monkeypatch,
                         CNNTRAIN_DATA_ROOT=str(synthetic_data_root))  # the uninterrupted run, here  # fmt: skip
    assert reference.returncode == 0, reference.stderr

    assert [row["epoch"] for row in read_rows(tmp_path / "killed")] == ["1", "2", "3"]
    assert without_seconds(tmp_path / "killed") == without_seconds(tmp_path / "reference")
    steps = (tmp_path / "killed" / "steps.csv").read_text()
    assert steps == (tmp_path / "reference" / "steps.csv").read_text(), "the per-step series continues exactly"
    assert steps.splitlines()[-1].split(",")[1] == "3.0"
    for key in ("test", "test_last", "best", "epochs_run"):
        assert read_summary(tmp_path / "killed")[key] == read_summary(tmp_path / "reference")[key], key
    assert not list((tmp_path / "killed").rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_cleanly_and_say_how_to_resume(start_cli, tmp_path, signum, status):
    process = start_cli(*THREE_EPOCHS, "hydra.run.dir=stopped")
    wait_for(tmp_path / "stopped" / "checkpoints" / "last.pt", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].endswith(f"continue with: cnntrain resume={tmp_path / 'stopped'}")
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["epoch"] >= 1


@pytest.mark.parametrize(
    "schedule",
    [
        ("scheduler=none",),
        ("scheduler=onecycle", "optimizer.lr=0.01"),
        ("trainer.sampler=balanced", "trainer.class_weights=balanced"),
    ],
)
def test_interrupt_in_process_then_resume_matches(tmp_path, tiny_config, monkeypatch, schedule):

    cfg = tiny_config("trainer.epochs=3", *schedule)
    run(cfg, tmp_path / "reference")
    stopped = run_stopped_in_epoch(cfg, tmp_path / "stopped", 2, monkeypatch)
    assert "continue with: cnntrain resume=" in str(stopped) and stopped.exit_code == 130
    assert len(read_rows(tmp_path / "stopped")) == 1

    resume_run(tmp_path / "stopped")
    assert without_seconds(tmp_path / "stopped") == without_seconds(tmp_path / "reference")
    assert read_summary(tmp_path / "stopped")["test"] == read_summary(tmp_path / "reference")["test"]


def test_resume_restarts_metrics_csv_at_the_checkpoint(tmp_path, tiny_config):
    """Rows written after the checkpoint (a crash between the two writes) are dropped, not duplicated,
    and temp files of a killed write are cleared."""
    run(tiny_config("trainer.epochs=1"), tmp_path)
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("2,9,9,9,9,9,9\n")
    (tmp_path / "summary.json").unlink()
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    checkpoint["config"]["trainer"]["epochs"] = 2
    from cnntrain.training.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "checkpoints" / "last.pt", checkpoint)
    (tmp_path / "checkpoints" / ".best.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # a write killed mid-way
    resume_run(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    rows = read_rows(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["train/loss"] != "9"
    assert read_summary(tmp_path)["epochs_run"] == 2


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("garbage", "cannot read checkpoint {dir}/checkpoints/last.pt: not a PyTorch file"),
        ("foreign", "{dir}/checkpoints/last.pt is not a cnntrain checkpoint"),
        ("missing", "checkpoint not found: {dir}/checkpoints/last.pt"),
    ],
)
def test_bad_checkpoint_on_resume_is_one_line_exit_2(run_cli, tmp_path, monkeypatch, setup, expected):
    """The missing checkpoint from the console script, the others in this process (cnntrain's own `main`)."""
    import torch

    checkpoints = tmp_path / "old" / "checkpoints"
    checkpoints.mkdir(parents=True)
    if setup == "garbage":
        (checkpoints / "last.pt").write_bytes(b"\x00not a checkpoint")
    elif setup == "foreign":
        torch.save({"state_dict": {}}, checkpoints / "last.pt")
    result = (
        run_cli("resume=old") if setup == "missing" else run_main(train.main, ["resume=old"], tmp_path, monkeypatch)
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {expected.format(dir=tmp_path / 'old')}\n" or result.stderr.startswith(
        f"error: {expected.format(dir=tmp_path / 'old')}"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_resume_refuses_other_overrides(run_cli, tmp_path):
    (tmp_path / "old").mkdir()
    result = run_cli("resume=old", "trainer.epochs=5")
    assert result.returncode == 2
    assert result.stderr.startswith("error: resume=old continues one run with its saved config")
