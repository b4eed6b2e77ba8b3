"""One run, start to finish: data -> model -> fit -> test -> files in the run directory.

This is the composition root. It reads the validated config and hands plain values to the modules
that do the work; it is the only place that knows the whole path of a run. Hydra stays in cli.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnntrain.accel import Accel
from cnntrain.augment import Augment
from cnntrain.checkpoint import load_checkpoint
from cnntrain.console import Reporter, format_metric
from cnntrain.data import DataBundle, DataFacts, ensure_available, fill_dataset_config, load_data
from cnntrain.device import resolve_device
from cnntrain.engine import FitResult, FitSettings, fit, test, unwrap
from cnntrain.metrics import per_class_accuracy
from cnntrain.model import build_model, count_parameters, ends_with_log_softmax, summary_table
from cnntrain.optim import build_optimizer, build_schedule
from cnntrain.config import validate
from cnntrain.errors import CheckpointError, Interrupted
from cnntrain.run_files import MetricsCSV, provenance, write_summary
from cnntrain.tensorboard_log import TensorBoardLogger
from rich.table import Table


def configure_torch(cfg: DictConfig) -> None:
    """Threads, seeds and determinism, before any tensor is made.

    Deterministic mode uses warn_only: an op with no deterministic kernel (a few CUDA ones) warns
    instead of stopping a run; summary.json records the flags in force.
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for repeatable matmuls
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)


def make_loss(cfg: DictConfig) -> nn.Module:
    """cross_entropy on logits, or NLL for models that end in log_softmax (auto picks by the last layer)."""
    kind = cfg.trainer.loss
    if kind == "auto":
        kind = "nll" if ends_with_log_softmax(cfg.model.layers) else "cross_entropy"
    if kind == "nll":
        return nn.NLLLoss()
    return nn.CrossEntropyLoss(label_smoothing=cfg.trainer.label_smoothing)


def fit_settings(cfg: DictConfig) -> FitSettings:
    t = cfg.trainer
    return FitSettings(
        epochs=t.epochs, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size, seed=cfg.seed,
        checkpoint_monitor=t.checkpoint.monitor, checkpoint_mode=t.checkpoint.mode,
        early_stopping=t.early_stopping.enabled, early_monitor=t.early_stopping.monitor,
        early_mode=t.early_stopping.mode, patience=t.early_stopping.patience, min_delta=t.early_stopping.min_delta,
        augment=Augment(translate=cfg.dataset.augment.translate, hflip=cfg.dataset.augment.hflip),
        tta=t.tta,
    )


def record_data_facts(cfg: DictConfig, bundle: DataBundle) -> None:
    """Put what the data decided (shape, classes, statistics) into the config the model, checkpoints and
    summary are built from; `${dataset.num_classes}` in a model then means the data's number of classes."""
    fill_dataset_config(cfg.dataset, DataFacts(bundle.input_shape, bundle.classes))
    cfg.dataset.mean = bundle.mean.flatten().tolist()
    cfg.dataset.std = bundle.std.flatten().tolist()


def data_description(bundle: DataBundle) -> dict[str, Any]:
    """What a saved model needs to know about its inputs (the data decides it, not always the config)."""
    return {"input_shape": list(bundle.input_shape), "classes": list(bundle.classes),
            "mean": bundle.mean.flatten().tolist(), "std": bundle.std.flatten().tolist()}


def test_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def per_class_table(classes: list[str], accuracies: list[float | None], matrix: torch.Tensor) -> Table:
    table = Table(title="per-class test accuracy", title_justify="left")
    for name, justify in (("class", "left"), ("images", "right"), ("correct", "right"), ("acc", "right")):
        table.add_column(name, justify=justify)
    totals = matrix.sum(dim=1).tolist()
    for name, acc, total, hits in zip(classes, accuracies, totals, matrix.diagonal().tolist()):
        table.add_row(name, str(total), str(hits), format_metric("acc", acc))
    return table


def run(cfg: DictConfig, run_dir: Path, *, reporter: Reporter | None = None, started: float | None = None,
        resume: dict[str, Any] | None = None) -> float:
    """Train, validate and test one config; write everything into run_dir; return the monitored metric.

    `started` is the perf_counter() reading when the process began its work (the CLI passes its own),
    so summary.json can tell start-up apart from training and evaluation. `resume` is the run's
    checkpoints/last.pt payload (see resume_run). Ctrl-C or SIGTERM becomes Interrupted, whose message
    says how to continue; last.pt is only ever replaced whole.
    """
    started = time.perf_counter() if started is None else started
    run_dir.mkdir(parents=True, exist_ok=True)
    own_reporter = reporter is None
    reporter = reporter or Reporter(run_dir / "train.log")
    tensorboard = TensorBoardLogger(run_dir / "tensorboard") if cfg.logger == "tensorboard" else None
    try:
        return _run(cfg, run_dir, reporter, started, tensorboard, resume)
    except KeyboardInterrupt as err:
        raise Interrupted(_interrupted_message(run_dir), exit_code=143 if str(err) == "SIGTERM" else 130) from None
    finally:
        if own_reporter:
            reporter.close()
        if tensorboard is not None:
            tensorboard.close()


def resume_run(run_dir: Path) -> float:
    """Continue an interrupted run in its own directory, with the config saved in its last checkpoint."""
    checkpoint = load_resume_checkpoint(run_dir)
    for stale in [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]:
        stale.unlink()  # a temp file of a write that was killed before its rename
    return run(validate(OmegaConf.create(checkpoint["config"])), run_dir, resume=checkpoint)


def load_resume_checkpoint(run_dir: Path) -> dict[str, Any]:
    """checkpoints/last.pt of run_dir, checked to hold everything a resume needs."""
    if not run_dir.is_dir():
        raise CheckpointError(f"resume={run_dir}: no such run directory")
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    missing = sorted({"epoch", "model", "optimizer", "scheduler", "best", "early_stopping", "rng", "history",
                      "config"} - set(checkpoint))
    if missing:
        raise CheckpointError(f"{run_dir / 'checkpoints' / 'last.pt'} cannot be resumed: it lacks {', '.join(missing)}")
    return checkpoint


def _interrupted_message(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return f"interrupted before the first epoch finished; nothing to resume in {run_dir}"
    return f"interrupted; {last} keeps the last finished epoch; continue with: cnntrain resume={run_dir}"


def _run(cfg: DictConfig, run_dir: Path, reporter: Reporter, started: float,
         tensorboard: TensorBoardLogger | None, resume: dict[str, Any] | None) -> float:
    configure_torch(cfg)
    device = resolve_device(cfg.device)
    ensure_available(cfg.dataset)
    bundle = load_data(cfg.dataset, seed=cfg.seed, device=device)
    record_data_facts(cfg, bundle)
    torch.manual_seed(cfg.seed)
    model, rows = build_model(cfg.model.layers, bundle.input_shape, model_name=cfg.model.name)
    accel = Accel(device, cfg.trainer.precision, cfg.trainer.channels_last, cfg.trainer.compile)
    model = accel.prepare_model(model)
    params = count_parameters(unwrap(model))
    reporter.print(f"[bold]cnntrain[/] {cfg.model.name} on {cfg.dataset.name}: {len(bundle.train)} train / "
                   f"{len(bundle.val)} val / {len(bundle.test)} test images, device {device}, "
                   f"{torch.get_num_threads()} CPU threads, run dir {run_dir}")
    model_table = summary_table(rows, cfg.model.name, bundle.input_shape)
    reporter.print(model_table)
    if tensorboard is not None:
        tensorboard.log_model(model_table)

    loss_fn = make_loss(cfg)
    settings = fit_settings(cfg)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    steps = -(-len(bundle.train) // settings.batch_size)
    schedule = build_schedule(optimizer, cfg.scheduler, settings.epochs, steps)
    metrics_csv = MetricsCSV(run_dir / "metrics.csv", rows=resume["history"] if resume else [])
    epoch_loggers = [metrics_csv.append] + ([tensorboard.log_epoch] if tensorboard is not None else [])
    if resume:
        reporter.print(f"resuming after epoch {resume['epoch']} from {run_dir / 'checkpoints' / 'last.pt'}")
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    train_started = time.perf_counter()
    with reporter.epochs(settings.epochs, progress=cfg.trainer.progress, title="epochs") as display:
        result = fit(model, bundle, optimizer, schedule, loss_fn, settings, run_dir / "checkpoints", display,
                     on_epoch=lambda row: [log(row) for log in epoch_loggers],
                     checkpoint_extra={"config": plain_cfg, "data": data_description(bundle)}, accel=accel,
                     resume=resume)
        test_started = time.perf_counter()
        last_test, _ = test(model, bundle, loss_fn, settings.eval_batch_size, display, accel, settings.tta)
        best = load_checkpoint(run_dir / "checkpoints" / "best.pt", map_location=device)
        unwrap(model).load_state_dict(best["model"])
        best_test, matrix = test(model, bundle, loss_fn, settings.eval_batch_size, display, accel, settings.tta)
    timing = {
        "startup_seconds": train_started - started,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds + time.perf_counter() - test_started,
    }

    accuracies = per_class_accuracy(matrix)
    if tensorboard is not None:
        from cnntrain.plots import misclassified_figure

        tensorboard.log_test({"test/acc": best_test.acc, "test/loss": best_test.loss}, len(result.history),
                             misclassified_figure(bundle.test.images, bundle.test.labels, best_test.preds,
                                                  bundle.classes))
    if cfg.report.plots:
        from cnntrain.plots import write_plots

        write_plots(run_dir, result.history, matrix, bundle.test.images, bundle.test.labels, best_test.preds,
                    bundle.classes)
    summary = build_summary(cfg, bundle, result, best_test, last_test, matrix, accuracies, params, device, started,
                            timing)
    write_summary(run_dir / "summary.json", summary)
    stop_note = f"stopped early after epoch {len(result.history)}" if result.stopped_early else \
        f"ran all {len(result.history)} epochs"
    reporter.print(per_class_table(bundle.classes, accuracies, matrix))
    reporter.print(test_table("result", [
        ("test/acc (best checkpoint)", format_metric("acc", best_test.acc)),
        ("test/loss (best checkpoint)", format_metric("loss", best_test.loss)),
        ("test/acc (last epoch)", format_metric("acc", last_test.acc)),
        (f"best {settings.checkpoint_monitor}", f"{format_metric(settings.checkpoint_monitor, result.best_value)}"
                                                f" at epoch {result.best_epoch}"),
        ("epochs", stop_note),
        ("training time", f"{result.train_seconds:.1f} s"),
        ("outputs", str(run_dir)),
    ]))
    return float(result.best_value) if result.best_value is not None else float("nan")


def build_summary(cfg: DictConfig, bundle: DataBundle, result: FitResult, best_test: Any, last_test: Any,
                  matrix: torch.Tensor, accuracies: list[float | None], params: int, device: torch.device,
                  started: float, timing: dict[str, float]) -> dict[str, Any]:
    """Everything a person (or a sweep table) wants to know about a finished run, as plain JSON."""
    return {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "test": {"loss": best_test.loss, "acc": best_test.acc, "weights": "best"},
        "test_last": {"loss": last_test.loss, "acc": last_test.acc, "weights": "last"},
        "status": "done",
        "best": {"monitor": cfg.trainer.checkpoint.monitor, "mode": cfg.trainer.checkpoint.mode,
                 "value": result.best_value, "epoch": result.best_epoch},
        "final_epoch": result.history[-1] if result.history else None,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "per_class_accuracy": dict(zip(bundle.classes, accuracies)),
        "confusion_matrix": matrix.tolist(),
        "classes": list(bundle.classes),
        "params": params,
        "sizes": {"train": len(bundle.train), "val": len(bundle.val), "test": len(bundle.test)},
        "train_seconds": timing["train_seconds"],
        "timing": {**timing, "elapsed_seconds": time.perf_counter() - started},
        "elapsed_seconds": time.perf_counter() - started,
        "precision": cfg.trainer.precision,
        "channels_last": cfg.trainer.channels_last,
        "compile": cfg.trainer.compile,
        "tta": cfg.trainer.tta,
        "seed": cfg.seed,
        **provenance(device),
    }
