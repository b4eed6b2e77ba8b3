"""The optimisation knobs: the weight average (EMA), gradient clipping and accumulation, no weight decay on
norm and bias parameters, and the learning-rate range test; each shown to act, on small synthetic data."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from cnntrain.commands import lr_find
from cnntrain.training.accel import Accel
from cnntrain.training.ema import Ema
from cnntrain.training.optim import parameter_groups

from helpers import TINY_RUN, compose_config, run_main, run_stopped_in_epoch


def test_the_average_moves_by_the_expected_update():
    """The first update copies the weights; each later one is ema = d * ema + (1 - d) * w with d the decay,
    warmed up as min(decay, (1 + n) / (10 + n)) after n updates."""
    model = nn.Linear(3, 2)
    ema = Ema(model, decay=0.9, warmup=False)
    first = model.weight.detach().clone()
    ema.after_step(model)
    assert torch.equal(ema.module.weight, first)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.after_step(model)
    assert torch.allclose(ema.module.weight, 0.9 * first + 0.1 * model.weight, atol=1e-7)
    assert not torch.equal(ema.module.weight, model.weight)
    warm = Ema(model, decay=0.999, warmup=True)
    assert [warm.current_decay() for _ in range(1)] == [pytest.approx(1 / 10)]
    warm.updates = 90
    assert warm.current_decay() == pytest.approx(91 / 100)
    warm.updates = 10_000
    assert warm.current_decay() == 0.999


def test_the_average_updates_every_k_steps():
    model = nn.Linear(2, 2)
    ema = Ema(model, decay=0.5, warmup=False, every=3)
    for _ in range(7):
        ema.after_step(model)
    assert (ema.steps, ema.updates) == (7, 2)


def test_clipping_bounds_the_gradient_norm():
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    (model(torch.randn(8, 10)) * 1e3).sum().backward()
    Accel(torch.device("cpu")).step(optimizer, clip=0.01)
    moved = float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before))))
    assert moved == pytest.approx(0.01, rel=1e-4), "SGD at lr 1 moves the weights by exactly the clipped norm"


def test_norm_and_bias_parameters_can_go_without_weight_decay(synthetic_data_root):
    cfg = compose_config(
        "model=fast-cnn3",
        "trainer.decay_norm_and_bias=false",
        "optimizer=sgd",
        "optimizer.weight_decay=5e-4",
        data_root=synthetic_data_root,
    )
    from cnntrain.models.builder import build_model

    model, _ = build_model(cfg.model.layers, [1, 28, 28])
    groups = parameter_groups(model, cfg.trainer, cfg.optimizer)
    assert len(groups) == 2 and "weight_decay" not in groups[0] and groups[1]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim <= 1 for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    default = parameter_groups(model, compose_config(data_root=synthetic_data_root).trainer, cfg.optimizer)
    assert len(default) == 1 and default[0]["params"] == list(model.parameters()), "today's single group"


@pytest.mark.slow
def test_accumulating_two_half_batches_matches_one_full_batch(tmp_path, synthetic_data_root):
    """cnn2 (no BatchNorm, no dropout): batches of 32 summed two at a time take the same optimizer steps as
    batches of 64, up to float summation order; steps.csv and the schedule count optimizer steps."""
    from cnntrain.training.run import run

    def trained(name: str, *overrides: str) -> tuple[dict, list]:
        run(
            compose_config(
                *TINY_RUN,
                "trainer.epochs=2",
                "trainer.progress=false",
                "report.plots=false",
                "scheduler=onecycle",
                *overrides,
                data_root=synthetic_data_root,
            ),
            tmp_path / name,
        )
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        with (tmp_path / name / "steps.csv").open() as f:
            return summary, list(csv.DictReader(f))

    whole, whole_steps = trained("whole", "trainer.batch_size=64")
    halves, halves_steps = trained("halves", "trainer.batch_size=32", "trainer.accumulate=2")
    assert len(halves_steps) == len(whole_steps)
    assert [float(r["lr"]) for r in halves_steps] == pytest.approx([float(r["lr"]) for r in whole_steps])
    assert [float(r["train/loss_step"]) for r in halves_steps] == pytest.approx(
        [float(r["train/loss_step"]) for r in whole_steps], abs=1e-4
    )
    assert halves["test"]["acc"] == pytest.approx(whole["test"]["acc"], abs=0.01)
    assert halves["optimization"]["effective_batch_size"] == 64 and halves["optimization"]["accumulate"] == 2


@pytest.mark.slow
def test_ema_runs_evaluate_the_average_and_resume_bit_identically(tmp_path, small_data_root, monkeypatch):
    from cnntrain.training.run import resume_run, run

    overrides = (
        *TINY_RUN,
        "model=fast-cnn3",
        "trainer.epochs=2",
        "trainer.progress=false",
        "report.plots=false",
        "trainer.ema.decay=0.9",
        "trainer.grad_clip=5.0",
        "trainer.accumulate=2",
    )
    run(compose_config(*overrides, data_root=small_data_root), tmp_path / "whole")
    last = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=False)
    assert any(not torch.equal(last["model"][key], last["train_weights"][key]) for key in last["model"]), (
        "best.pt and last.pt hold the average under 'model', the raw weights under 'train_weights'"
    )
    assert last["ema"]["steps"] > last["ema"]["updates"] - 1 > 0

    run_stopped_in_epoch(compose_config(*overrides, data_root=small_data_root), tmp_path / "resumed", 2, monkeypatch)
    resume_run(tmp_path / "resumed")
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    for key in ("model", "train_weights"):
        assert all(torch.equal(resumed[key][name], value) for name, value in last[key].items()), key
    assert resumed["ema"] == last["ema"]


@pytest.mark.slow
def test_the_lr_range_test_writes_its_curve_and_suggests_a_rate(tmp_path, monkeypatch, synthetic_data_root):
    out = tmp_path / "found" / "lr.png"
    result = run_main(
        lr_find.main,
        [*TINY_RUN, "--steps", "40", "--min-lr", "1e-5", "--max-lr", "10", "--out", str(out)],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert result.returncode == 0, result.stderr
    with (tmp_path / "found" / "lr.csv").open() as f:
        rows = list(csv.DictReader(f))
    lrs = [float(row["lr"]) for row in rows]
    assert lrs[0] == pytest.approx(1e-5) and lrs == sorted(lrs) and 5 <= len(rows) <= 40
    line = next(line for line in result.stdout.splitlines() if line.startswith("suggested optimizer.lr="))
    suggested = float(line.split("=")[1].split()[0])
    assert 1e-5 < suggested < 10
    assert out.is_file() and not (tmp_path / "outputs").exists(), "a range test leaves no run directory"


def test_the_suggestion_is_the_steepest_fall():
    lrs = [10 ** (-5 + i * 0.1) for i in range(60)]
    drops = [0.0] * 20 + [0.05] * 5 + [0.4] + [0.05] * 9 + [0.0] * 15
    loss = [3.0 - sum(drops[: i + 1]) for i in range(50)] + [1.5 * 1.5**i for i in range(10)]
    rows = [(lr, value, value) for lr, value in zip(lrs, loss)]
    assert lr_find.suggestion(rows) == pytest.approx(lrs[25]), "the one steep step"
    assert lr_find.suggestion([(lr, 1.0 + lr, 1.0 + lr) for lr in lrs]) is None, "a loss that never falls"
