"""The per-step series: training loss and learning rate of every optimizer step, in steps.csv, the loggers
and curves.png (x axis in fractional epochs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from cnntrain.config.names import STEP_COLUMNS, STEP_LOSS
from cnntrain.reporting.figures import smoothed
from cnntrain.reporting.plots import plot_curves
from cnntrain.reporting.run_dir import read_steps
from cnntrain.training.run import run


@pytest.fixture(scope="module")
def onecycle_run(tmp_path_factory, small_data_root) -> Path:
    """Counts come from the run's own sizes: the small set serves."""
    from helpers import compose_config

    cfg = compose_config(
        "model=cnn2",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "scheduler=onecycle",
        "optimizer.lr=0.01",
        data_root=small_data_root,
    )
    run_dir = tmp_path_factory.mktemp("onecycle") / "run"
    run(cfg, run_dir)
    return run_dir


def test_steps_csv_has_every_optimizer_step(onecycle_run):
    summary = json.loads((onecycle_run / "summary.json").read_text())
    batches = -(-summary["sizes"]["train"] // 64)
    with (onecycle_run / "steps.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == STEP_COLUMNS
    assert len(rows) == 2 * batches
    assert [int(r["step"]) for r in rows] == list(range(1, 2 * batches + 1))
    assert float(rows[batches - 1]["epoch"]) == 1.0 and float(rows[-1]["epoch"]) == 2.0
    assert 0.0 < float(rows[0]["epoch"]) < 1.0


def test_the_steps_add_up_to_the_epoch_and_show_the_schedule_inside_it(onecycle_run):
    """Each epoch's train/loss is the mean of its steps' losses weighted by their batch sizes; OneCycle's
    learning rate rises and falls within the run, step by step."""
    summary = json.loads((onecycle_run / "summary.json").read_text())
    n = summary["sizes"]["train"]
    steps = read_steps(onecycle_run / "steps.csv")
    with (onecycle_run / "metrics.csv").open(newline="") as f:
        epochs = list(csv.DictReader(f))
    per_epoch = len(steps) // 2
    sizes = [min(64, n - 64 * i) for i in range(per_epoch)]
    for e, row in enumerate(epochs):
        losses = [s[STEP_LOSS] for s in steps[e * per_epoch : (e + 1) * per_epoch]]
        assert sum(loss * size for loss, size in zip(losses, sizes)) / n == pytest.approx(
            float(row["train/loss"]), rel=1e-9
        )
    lrs = [s["lr"] for s in steps]
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1 and lrs[0] < max(lrs) / 10 and lrs[-1] < max(lrs) / 10
    assert float(epochs[0]["lr"]) == lrs[0], "metrics.csv keeps the epoch's first learning rate"


def test_read_steps_through_an_epoch_and_without_a_file(onecycle_run, tmp_path):
    steps = read_steps(onecycle_run / "steps.csv")
    first = read_steps(onecycle_run / "steps.csv", through_epoch=1)
    assert len(first) == len(steps) // 2 and first[-1]["epoch"] == 1.0
    assert read_steps(tmp_path / "missing.csv") == []
    (tmp_path / "broken.csv").write_text("step,epoch\n1,x\n")
    assert read_steps(tmp_path / "broken.csv") == []


def test_curves_with_and_without_steps(onecycle_run, tmp_path):
    history = [{"epoch": 1, "train/loss": 1.0, "train/acc": 0.5, "val/loss": 0.9, "val/acc": 0.6, "lr": 0.1}]
    plot_curves(history, tmp_path / "epochs.png")
    plot_curves(history, tmp_path / "steps.png", read_steps(onecycle_run / "steps.csv"))
    for name in ("epochs.png", "steps.png"):
        assert Image.open(tmp_path / name).size == (1500, 400)


def test_smoothing_keeps_level_and_follows_a_step():
    assert smoothed([2.0] * 10) == pytest.approx([2.0] * 10)
    out = smoothed([0.0] * 50 + [1.0] * 50, span=5)
    assert out[0] == 0.0 and out[49] == 0.0 and 0.3 < out[50] < 0.4 and out[-1] == pytest.approx(1.0)
