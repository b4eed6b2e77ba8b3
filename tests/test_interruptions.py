"""Checkpoints inside an epoch, stop signals and the time budget, in this process (the CLI's real processes:
test_preemption.py). Signals are real: os.kill of this process at a chosen step."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from test_resume import without_seconds
from test_run import read_rows, read_summary

from cnntrain.config.budgets import parse_duration
from cnntrain.errors import ConfigError, Stopped
from cnntrain.training import interruptions
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.run import resume_run, run

from helpers import compose_config

SMALL = (
    "model=cnn2",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "trainer.progress=false",
    "report.plots=false",
    "report.html=false",
    "report.analysis=false",
    "threads=1",
)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """360 train / 40 val / 100 test images: 12 batches of 32 an epoch."""
    from synthetic_idx import write_idx_dataset

    root = tmp_path_factory.mktemp("small_data")
    write_idx_dataset(root, "MNIST", n_train=400, n_test=100, seed=0)
    return root


@pytest.fixture
def small_config(small_root):
    return lambda *overrides: compose_config(*SMALL, *overrides, data_root=small_root)


@pytest.fixture(scope="module")
def stopped_inside(tmp_path_factory, small_root):
    """A one-epoch run stopped by SIGTERM at step 3 (its last.pt inside epoch 1); copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch, pytest.raises(Stopped):
        signal_at(monkeypatch, 3, signal.SIGTERM)
        run(compose_config(*SMALL, "trainer.epochs=1", data_root=small_root), run_dir)
    return run_dir


def signal_at(monkeypatch, step: int, signum: int) -> None:
    """Send `signum` to this process just before the loop asks about optimizer step `step` (counted over epochs)."""
    real = interruptions.StepWatch.after_step

    def after_step(self, progress, epoch, global_step, last_of_epoch):
        if global_step == step:
            os.kill(os.getpid(), signum)
        return real(self, progress, epoch, global_step, last_of_epoch)

    monkeypatch.setattr(interruptions.StepWatch, "after_step", after_step)


def assert_same_run(resumed: Path, reference: Path) -> None:
    assert without_seconds(resumed) == without_seconds(reference)
    assert (resumed / "steps.csv").read_text() == (reference / "steps.csv").read_text()
    assert read_summary(resumed)["test"] == read_summary(reference)["test"]
    ours, theirs = (load_checkpoint(d / "checkpoints" / "best.pt")["model"] for d in (resumed, reference))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize(
    ("extra", "step"),
    [
        (("trainer.checkpoint.every_steps=4",), 17),  # epoch 2, batch 5: after a checkpoint of step 16
        (
            (
                "trainer.ema.decay=0.9",
                "scheduler=onecycle",
                "optimizer.lr=0.01",
                "trainer.accumulate=2",
                "dataset.augment=[{translate: 2}, {hflip: 0.5}, {mixup: 0.2}]",
            ),
            3,
        ),  # epoch 1, batches 5-6
    ],
)
def test_a_signal_inside_an_epoch_saves_there_and_the_resume_equals_the_uninterrupted_run(
    tmp_path, small_config, monkeypatch, extra, step
):
    cfg = small_config(*extra)
    run(cfg, tmp_path / "reference")
    handlers = {signum: signal.getsignal(signum) for signum in interruptions.STOP_SIGNALS}
    signal_at(monkeypatch, step, signal.SIGUSR1)
    with pytest.raises(Stopped) as stopped:
        run(cfg, tmp_path / "stopped")
    monkeypatch.undo()
    assert stopped.value.exit_code == 128 + signal.SIGUSR1
    assert str(stopped.value).startswith("stopped by SIGUSR1: checkpoints/last.pt holds epoch ")
    assert str(stopped.value).endswith(f"; continue with: cnntrain resume={tmp_path / 'stopped'}")
    assert {signum: signal.getsignal(signum) for signum in interruptions.STOP_SIGNALS} == handlers
    saved = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert saved["in_epoch"]["step"] > 0 and saved["epoch"] == saved["in_epoch"]["epoch"] - 1
    assert len(read_rows(tmp_path / "stopped")) == saved["epoch"]

    resume_run(tmp_path / "stopped")
    assert_same_run(tmp_path / "stopped", tmp_path / "reference")


@pytest.mark.parametrize(
    ("every", "steps"),
    [
        ("every_steps=5", [5, 10]),  # over 12-batch epochs: steps 5 and 10 of epoch 1, then the epoch's end
        ("every_minutes=0.00001", list(range(1, 12))),  # 0.6 ms: after every step (a step takes longer)
    ],
)
def test_checkpoints_are_written_inside_the_epoch(tmp_path, small_config, monkeypatch, every, steps):
    from cnntrain.training import run_state

    written = []
    real = run_state.save_checkpoint
    monkeypatch.setattr(
        run_state,
        "save_checkpoint",
        lambda path, state, **kwargs: (
            written.append((path.name, state["epoch"], (state.get("in_epoch") or {}).get("step"))),
            real(path, state, **kwargs),
        ),
    )
    run(small_config("trainer.epochs=1", f"trainer.checkpoint.{every}"), tmp_path)
    expected = [*(("last.pt", 0, step) for step in steps), ("last.pt", 1, None)]
    assert [w for w in written if w[0] == "last.pt"] == expected


def test_a_signal_during_validation_stops_after_the_epochs_checkpoint(tmp_path, small_config, monkeypatch):
    from cnntrain.training import evaluation

    real = evaluation.evaluate

    def evaluate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR2)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", evaluate)  # the task's validation calls it through the module
    with pytest.raises(Stopped) as stopped:
        run(small_config(), tmp_path)
    assert stopped.value.exit_code == 140 and "holds the end of epoch 1;" in str(stopped.value)
    assert "in_epoch" not in load_checkpoint(tmp_path / "checkpoints" / "last.pt")


def test_the_time_limit_stops_training_and_tests_the_best_weights(tmp_path, small_config):
    run(small_config("trainer.epochs=500", "trainer.time_limit=3s"), tmp_path)
    summary = read_summary(tmp_path)
    assert summary["status"] == "done" and summary["test"]["weights"] == "best"
    stopped = summary["stopped"]
    assert stopped["reason"] == "time_limit" and stopped["limit_seconds"] == 3
    assert 3 <= stopped["trained_seconds"] < 60 and stopped["epoch"] == summary["epochs_run"] < 500
    assert 1 <= stopped["steps_in_epoch"] <= stopped["steps_per_epoch"] == 12
    assert "stopped at the time limit (3 s) in epoch" in (tmp_path / "train.log").read_text()


def test_a_finished_run_and_an_early_stop_say_why_they_stopped(tmp_path, small_config):
    run(small_config("trainer.epochs=1"), tmp_path / "all")
    assert read_summary(tmp_path / "all")["stopped"] == {"reason": "finished"}
    run(
        small_config(
            "trainer.epochs=4",
            "trainer.early_stopping.patience=1",
            "trainer.early_stopping.monitor=train/acc",
            "trainer.early_stopping.mode=min",
        ),
        tmp_path / "early",
    )
    summary = read_summary(tmp_path / "early")
    assert summary["stopped"] == {"reason": "early_stopping", "epoch": 2, "monitor": "train/acc", "patience": 1}
    assert summary["stopped_early"] is True


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (0.5, 0.5),
        ("5400", 5400.0),
        ("1h30m", 5400.0),
        ("90m", 5400.0),
        ("45s", 45.0),
        ("2d", 172800.0),
        ("1h 0.5m", 3630.0),
        ("1.5H", 5400.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.time_limit=soon",
            "trainer.time_limit=soon: expected a time > 0 as seconds (e.g. 5400) or a duration "
            "such as 1h30m, 90m, 45s, 2d; null: no limit",
        ),
        ("trainer.time_limit=0", "trainer.time_limit=0: expected a time > 0"),
        ("trainer.time_limit=-5", "trainer.time_limit=-5: expected a time > 0"),
        ("trainer.time_limit=1x", "trainer.time_limit=1x: expected a time > 0"),
        ("trainer.time_limit=true", "trainer.time_limit=True: expected a time > 0"),
        ("trainer.time_limit=m", "trainer.time_limit=m: expected a time > 0"),
        ("trainer.checkpoint.every_steps=0", "trainer.checkpoint.every_steps=0: expected a whole number >= 1"),
        ("trainer.checkpoint.every_steps=2.5", "trainer.checkpoint.every_steps=2.5: expected a whole number >= 1"),
        ("trainer.checkpoint.every_steps=often", "trainer.checkpoint.every_steps=often: expected a whole number"),
        ("trainer.checkpoint.every_minutes=0", "trainer.checkpoint.every_minutes=0: expected a number of minutes > 0"),
        ("trainer.checkpoint.every_minutes=-1", "trainer.checkpoint.every_minutes=-1: expected a number of minutes"),
        ("trainer.checkpoint.every_minutes=inf", "trainer.checkpoint.every_minutes=inf: expected a number of minutes"),
    ],
)
def test_bad_budgets_are_one_line(override, message, small_root):
    with pytest.raises(ConfigError) as caught:
        compose_config(*SMALL, override, data_root=small_root)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_bad_time_limit_on_the_command_line_exits_2(run_cli):
    result = run_cli("trainer.time_limit=forever")
    assert result.returncode == 2
    assert result.stderr.startswith("error: trainer.time_limit=forever: expected a time > 0")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_inside_an_epoch_resumes_on_as_many_ranks_only(stopped_inside, run_cli):
    result = run_cli(f"resume={stopped_inside}", "trainer.devices=2")
    assert result.returncode == 2
    assert result.stderr == (
        "error: last.pt was saved inside an epoch by 1 process(es); its per-rank state continues "
        "on 1 only: resume with trainer.devices=1 (this resume asks for 2)\n"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(step="3"), "its 'in_epoch' 'step' is a string"),
        (lambda s: s.update(epoch=7), "its 'in_epoch' position (epoch 7, step 3) does not follow epoch 0"),
        (lambda s: s["ranks"].append(s["ranks"][0]), "its 'in_epoch' has 2 ranks' states for 1 ranks"),
        (lambda s: s["ranks"][0]["sums"].update(losses=torch.zeros(2)), "per-batch sums do not hold 3 batches"),
        (lambda s: s["ranks"][0].update(rng={"shuffle": [1, 2]}), "ranks' random states are not tensors"),
    ],
)
def test_an_edited_position_is_refused_in_one_line(tmp_path, stopped_inside, edit, message):
    """What the command checks before a resume starts (the CLI's one line: test_resume.py's bad checkpoints)."""
    from cnntrain.errors import CheckpointError
    from cnntrain.training.checkpoints import save_checkpoint
    from cnntrain.training.run import load_resume_checkpoint

    shutil.copytree(stopped_inside, tmp_path / "stopped")
    path = tmp_path / "stopped" / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(path)
    edit(checkpoint["in_epoch"])
    save_checkpoint(path, checkpoint)
    with pytest.raises(CheckpointError) as caught:
        load_resume_checkpoint(tmp_path / "stopped")
    assert str(caught.value).startswith(f"{path} cannot be resumed: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_epochs_batches_from_a_start_are_the_tail_of_the_whole_epoch():
    from cnntrain.data.containers import TensorSplit, iterate_batches

    split = TensorSplit(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1), torch.arange(50))
    for rank in (0, 1):
        whole = list(
            iterate_batches(split, 8, shuffle=True, generator=torch.Generator().manual_seed(3), rank=rank, world=2)
        )
        tail = list(
            iterate_batches(
                split, 8, shuffle=True, generator=torch.Generator().manual_seed(3), rank=rank, world=2, start=4
            )
        )
        assert len(tail) == len(whole) - 4
        assert all(torch.equal(a[1], b[1]) for a, b in zip(tail, whole[4:]))


def test_an_image_folder_read_by_workers_resumes_inside_an_epoch_exactly(tmp_path, monkeypatch):
    """Files decoded by DataLoader workers (dataset.in_memory=false): the resume skips the batches done unread."""
    from synthetic_images import make_folder

    root = make_folder(tmp_path / "data", rgb=False, size=20, per_class=12)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.in_memory=false",
        "dataset.num_workers=1",
        "model=cnn2",
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.progress=false",
        "report.plots=false",
        "report.html=false",
        "dataset.augment=[{hflip: 0.5}]",
    )
    run(cfg, tmp_path / "reference")
    signal_at(monkeypatch, 5, signal.SIGUSR2)
    with pytest.raises(Stopped):
        run(cfg, tmp_path / "stopped")
    monkeypatch.undo()
    resume_run(tmp_path / "stopped")
    assert_same_run(tmp_path / "stopped", tmp_path / "reference")


def test_a_signal_before_training_stops_at_the_first_step(tmp_path, small_config, monkeypatch):
    """SIGTERM while the data loads (the run's handlers are in place from its start): saved after step 1."""
    import cnntrain.training.run as run_module

    real = run_module.setup

    def setup(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "setup", setup)
    with pytest.raises(Stopped) as stopped:
        run(small_config("trainer.epochs=1"), tmp_path)
    assert stopped.value.exit_code == 143 and "holds epoch 1, batch 1 of 12;" in str(stopped.value)
