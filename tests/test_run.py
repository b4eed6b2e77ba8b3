"""One run end to end, in-process: the files it writes, checkpoints, determinism, stopping and schedules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cnntrain.data.loading import load_data
from cnntrain.models.builder import build_model
from cnntrain.reporting.metrics import balanced_accuracy, macro_f1
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.evaluation import evaluate
from cnntrain.training.run import run
from cnntrain.training.single_label import make_loss


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_data_root):
    """One tiny cnn2 run shared by the tests that only read its outputs."""
    from helpers import TINY_RUN, compose_config

    cfg = compose_config(*TINY_RUN, "trainer.progress=false", data_root=synthetic_data_root)
    run_dir = tmp_path_factory.mktemp("run")
    returned = run(cfg, run_dir)
    return cfg, run_dir, returned


def test_run_directory_has_everything(finished_run):
    _, run_dir, _ = finished_run
    for name in ("train.log", "metrics.csv", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp")), "atomic writes leave no temp files"


def test_metrics_csv_has_one_row_per_epoch(finished_run):
    _, run_dir, _ = finished_run
    rows = read_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "seconds"]
    assert float(rows[1]["train/loss"]) < float(rows[0]["train/loss"])


def test_summary_holds_test_metrics_and_provenance(finished_run):
    cfg, run_dir, returned = finished_run
    summary = read_summary(run_dir)
    assert summary["test"]["acc"] > 0.5, "cnn2 learns the synthetic classes well above chance (10%)"
    assert len(summary["per_class_accuracy"]) == 10
    matrix = torch.tensor(summary["confusion_matrix"])
    assert matrix.shape == (10, 10) and int(matrix.sum()) == summary["sizes"]["test"] == 300
    assert int(matrix.diagonal().sum()) == round(summary["test"]["acc"] * 300)
    assert summary["test"]["balanced_acc"] == pytest.approx(balanced_accuracy(matrix))
    assert summary["test"]["macro_f1"] == pytest.approx(macro_f1(matrix))
    assert "acc5" not in summary["test"], "top-5 accuracy is measured with 20 or more classes"
    assert summary["class_weights"] is None and summary["sampler"] == "shuffle" and summary["cross_validation"] is None
    assert sum(summary["train_class_counts"].values()) == summary["sizes"]["train"]
    assert summary["params"] == 50_186
    assert summary["macs_per_image"] == 32 * 9 * 28 * 28 + 64 * 32 * 9 * 14 * 14 + 3136 * 10  # cnn2 on 1x28x28
    assert summary["device"] == "cpu" and summary["epochs_run"] == 2
    assert set(summary["versions"]) >= {"python", "torch", "torchvision", "numpy", "cuda", "cudnn", "cnntrain"}
    assert summary["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["device_name"] and isinstance(summary["cpu"]["dispatch_env"], dict)
    assert summary["train_seconds"] > 0 and summary["elapsed_seconds"] >= summary["train_seconds"]
    best_val = max(float(r["val/acc"]) for r in read_rows(run_dir))
    assert returned == pytest.approx(best_val) == pytest.approx(summary["best"]["value"])


def test_train_log_mirrors_the_console(finished_run):
    _, run_dir, _ = finished_run
    log = (run_dir / "train.log").read_text()
    for text in (
        "model cnn2",
        "50,186",
        "train/loss",
        "per-class test accuracy",
        "test/acc (best checkpoint)",
        "test/balanced_acc (best checkpoint)",
        "test/macro_f1 (best checkpoint)",
    ):
        assert text in log


def test_checkpoint_contents(finished_run):
    _, run_dir, _ = finished_run
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert set(last) >= {
        "model",
        "optimizer",
        "scheduler",
        "epoch",
        "rng",
        "best",
        "early_stopping",
        "config",
        "metrics",
    }
    assert set(last["rng"]) >= {"torch", "shuffle"}
    assert last["config"]["model"]["name"] == "cnn2"
    assert last["optimizer"]["state"], "optimizer moments are saved for resuming"
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == read_summary(run_dir)["best"]["epoch"]


def test_test_metrics_come_from_the_best_weights(tmp_path, tiny_config, train_cli):
    overrides = ("trainer.epochs=3", "trainer.checkpoint.monitor=val/loss", "trainer.checkpoint.mode=max")
    cfg = tiny_config(*overrides)
    train_cli(tmp_path, *overrides)
    summary = read_summary(tmp_path)
    assert summary["best"]["epoch"] == 1, "the highest val loss is the first epoch's"
    model, _ = build_model(cfg.model.layers, (1, 28, 28))
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"])
    bundle = load_data(cfg.dataset, seed=cfg.seed)
    again = evaluate(model, bundle.test, bundle, make_loss(cfg), 256)
    assert summary["test"]["acc"] == pytest.approx(again.acc)
    assert summary["test"]["loss"] == pytest.approx(again.loss, rel=1e-5)


def test_same_command_twice_gives_same_metrics(tmp_path, small_train_cli):
    small_train_cli(tmp_path / "a")
    small_train_cli(tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(read_rows(tmp_path / "a")) == strip(read_rows(tmp_path / "b"))
    assert read_summary(tmp_path / "a")["test"] == read_summary(tmp_path / "b")["test"]


def test_different_seed_gives_different_run(tmp_path, small_train_cli):
    small_train_cli(tmp_path / "a", "trainer.epochs=1")
    small_train_cli(tmp_path / "b", "trainer.epochs=1", "seed=7")
    assert read_rows(tmp_path / "a")[0]["train/loss"] != read_rows(tmp_path / "b")[0]["train/loss"]


def test_early_stopping_stops_after_patience(tmp_path, train_cli):
    # mode=max on a falling loss: no epoch after the first counts as an improvement
    train_cli(tmp_path, "trainer.epochs=6", "trainer.early_stopping.mode=max", "trainer.early_stopping.patience=2")
    summary = read_summary(tmp_path)
    assert summary["stopped_early"] is True and summary["epochs_run"] == 3
    assert len(read_rows(tmp_path)) == 3


def test_early_stopping_can_be_disabled(tmp_path, small_train_cli):
    small_train_cli(
        tmp_path,
        "trainer.epochs=3",
        "trainer.early_stopping.mode=max",
        "trainer.early_stopping.patience=0",
        "trainer.early_stopping.enabled=false",
    )
    assert read_summary(tmp_path)["epochs_run"] == 3


def test_plateau_cuts_lr_when_monitored_metric_stalls(tmp_path, train_cli):
    train_cli(
        tmp_path,
        "trainer.epochs=3",
        "scheduler=plateau",
        "scheduler.mode=max",
        "scheduler.patience=0",
        "scheduler.factor=0.5",
    )
    lrs = [float(r["lr"]) for r in read_rows(tmp_path)]
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4])


def test_step_schedule_is_per_epoch(tmp_path, small_train_cli):
    small_train_cli(tmp_path, "trainer.epochs=3", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.1")
    assert [float(r["lr"]) for r in read_rows(tmp_path)] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_onecycle_steps_per_batch(tmp_path, train_cli):
    train_cli(tmp_path, "trainer.epochs=2", "scheduler=onecycle", "optimizer.lr=0.01", "scheduler.pct_start=0.5")
    lrs = [float(r["lr"]) for r in read_rows(tmp_path)]
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert lrs[1] == pytest.approx(0.01, rel=0.05), "half-way through a two-epoch cycle is the peak"
    scheduler = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["scheduler"]
    assert scheduler["last_epoch"] == 2 * 17, "stepped once per batch: 1,080 train images / 64 = 17 batches"


def test_cosine_with_warmup(tmp_path, train_cli):
    train_cli(tmp_path, "trainer.epochs=3", "scheduler=cosine", "scheduler.warmup_epochs=1")
    lrs = [float(r["lr"]) for r in read_rows(tmp_path)]
    assert lrs[0] < 1e-4 and lrs[1] == pytest.approx(1e-3, rel=0.01) and lrs[2] < lrs[1]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "rmsprop"])
def test_each_optimizer_trains(tmp_path, small_train_cli, optimizer):
    small_train_cli(tmp_path, "trainer.epochs=1", f"optimizer={optimizer}", "optimizer.lr=0.001")
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer"]
    assert read_summary(tmp_path)["epochs_run"] == 1 and state["param_groups"][0]["lr"] == pytest.approx(0.001)


def test_log_softmax_model_trains_with_nll(tmp_path, tiny_config, small_train_cli):
    cfg = tiny_config("model=leaky-cnn3", "trainer.epochs=1")
    assert isinstance(make_loss(cfg), torch.nn.NLLLoss)
    small_train_cli(tmp_path, "model=leaky-cnn3", "trainer.epochs=1")
    assert read_summary(tmp_path)["test"]["loss"] > 0


def test_label_smoothing_reaches_the_loss(tiny_config):
    loss = make_loss(tiny_config("trainer.label_smoothing=0.1"))
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and loss.label_smoothing == pytest.approx(0.1)


def test_diverging_loss_stops_with_a_clear_error(tmp_path, tiny_config):
    from cnntrain.training.epoch import TrainingDiverged

    cfg = tiny_config(
        "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=1e12", "optimizer.nesterov=false", "optimizer.momentum=0"
    )
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) in epoch 1, batch \d+ of 17; lower"):
        run(cfg, tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists() and not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(("check_every", "batches_run"), [(1, 22), (8, 17 + 8), (50, 17 + 17)])
def test_nan_names_its_batch_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_config, monkeypatch, check_every, batches_run
):
    """A loss that turns NaN at epoch 2, batch 5 (17 batches per epoch) is named as such. The CPU checks every
    batch; an accelerator checks every 50 (and at the epoch's end), forced here on the CPU."""
    import cnntrain.training.epoch as engine_module
    import cnntrain.training.single_label as train_module
    from cnntrain.training.epoch import TrainingDiverged

    monkeypatch.setattr(engine_module, "divergence_check_every", lambda device: check_every)

    real_make_loss = train_module.make_loss
    calls = {"training": 0}

    def nan_at_batch_22(cfg, *weights_and_device):
        loss_fn = real_make_loss(cfg, *weights_and_device)

        def loss(logits, labels):
            value = loss_fn(logits, labels)
            if torch.is_grad_enabled():
                calls["training"] += 1
                if calls["training"] == 17 + 5:
                    return value * float("nan")
            return value

        return loss

    monkeypatch.setattr(train_module, "make_loss", nan_at_batch_22)
    with pytest.raises(TrainingDiverged, match="training loss became nan in epoch 2, batch 5 of 17"):
        run(tiny_config("trainer.epochs=3"), tmp_path)
    assert calls["training"] == batches_run, "stopped at the first check after the bad batch"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_rows(tmp_path)] == ["1"]
