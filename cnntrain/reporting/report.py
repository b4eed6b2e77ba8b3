"""The end of a run: test metrics to the loggers, the pictures, summary.json and the result tables.

Everything a person (or a sweep table, or `cnntrain-reproduce`) reads about a finished run is made here,
from what setup, fit and test produced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.names import TEST_METRICS, summary_key
from cnntrain.data.containers import images_at
from cnntrain.data.loading import DataBundle
from cnntrain.errors import UserError, first_line
from cnntrain.models.builder import LayerRow
from cnntrain.models.cam import CAM_METHOD, cam_available, find_cam_layer, predicted_maps
from cnntrain.models.registry import fmt_shape
from cnntrain.reporting.analysis import analysis_summary, worst_mistakes
from cnntrain.reporting.analysis_plots import plot_per_class, plot_reliability, plot_worst_mistakes
from cnntrain.reporting.console import Reporter, format_metric
from cnntrain.reporting.loggers import Logger
from cnntrain.reporting.metrics import EvalResult, FitResult, class_metrics, confusion_matrix, per_class_accuracy
from cnntrain.reporting.page import write_run_page
from cnntrain.reporting.plots import misclassified_figure, write_plots
from cnntrain.reporting.provenance import provenance
from cnntrain.reporting.run_dir import RunDir, write_summary
from cnntrain.reporting.tables import key_value_table, most_confused_table, per_class_table
from cnntrain.reporting.text import markup


@dataclass
class Tested:
    """The test split seen with the best checkpoint's weights and with the last epoch's."""

    best: EvalResult
    last: EvalResult
    matrix: torch.Tensor  # confusion matrix of the best weights, [true, predicted]
    model: nn.Module | None = None  # the module holding the best weights (the EMA average with EMA), for CAMs
    layer_names: list[str] | None = None  # its config items' layer names, as the model summary shows them

    def class_metrics(self, labels: torch.Tensor, num_classes: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Balanced accuracy, macro-F1 (and top-5 accuracy with 20+ classes) of the best and the last weights."""
        last_labels = self.last.labels if self.last.labels is not None else labels
        last = self.matrix if self.last is self.best else confusion_matrix(self.last.preds, last_labels, num_classes)
        return class_metrics(self.matrix, self.best.acc5), class_metrics(last, self.last.acc5)


def report(
    cfg: DictConfig,
    paths: RunDir,
    reporter: Reporter,
    loggers: list[Logger],
    data: DataBundle,
    size: dict[str, int],
    device: torch.device,
    result: FitResult,
    tested: Tested,
    started: float,
    timing: dict[str, float],
    parallel: dict[str, Any],
    imbalance: dict[str, Any] | None = None,
    rows: list[LayerRow] | None = None,
) -> None:
    """Log the test metrics, draw the plots, write summary.json and print the result tables.

    `parallel` says how the run was spread over processes (world size, backend, global and per-rank batch);
    `imbalance` how it met class imbalance (class counts, class weights, sampler, fold), as its own keys.
    `size` holds the model's parameters (all, trained by the first epoch, frozen) and multiply-adds per image,
    as its summary table shows; `rows` are that table's rows (summary.json's model_summary)."""
    accuracies = per_class_accuracy(tested.matrix)
    best_metrics, last_metrics = tested.class_metrics(data.test.labels, len(data.classes))

    def misclassified() -> Any:
        return misclassified_figure(data.test.images, data.test.labels, tested.best.preds, data.classes)

    for logger in loggers:
        logger.log_test(
            {**dict(zip(TEST_METRICS, (tested.best.acc, tested.best.loss))), **best_metrics},
            len(result.history),
            misclassified,
        )
    if cfg.report.plots:
        write_plots(
            paths, result.history, tested.matrix, data.test.images, data.test.labels, tested.best.preds, data.classes
        )
    analysis = analyse(cfg, paths, data, tested) if cfg.report.analysis and tested.best.table is not None else None
    summary = build_summary(cfg, data, result, tested, accuracies, size, started, timing, (best_metrics, last_metrics))
    summary["analysis"] = analysis
    page = write_outputs(cfg, paths, reporter, summary, device, parallel, imbalance, rows)
    stop_note = stopped_note(result)
    monitor = cfg.trainer.checkpoint.monitor
    reporter.print(per_class_table(data.classes, accuracies, tested.matrix))
    if analysis and analysis["most_confused"]:
        reporter.print(most_confused_table(analysis["most_confused"]))
    reporter.print(
        key_value_table(
            "result",
            [
                ("test/acc (best checkpoint)", format_metric("acc", tested.best.acc)),
                ("test/loss (best checkpoint)", format_metric("loss", tested.best.loss)),
                *((f"{name} (best checkpoint)", format_metric(name, value)) for name, value in best_metrics.items()),
                ("test/acc (last epoch)", format_metric("acc", tested.last.acc)),
                (f"best {monitor}", f"{format_metric(monitor, result.best_value)} at epoch {result.best_epoch}"),
                ("epochs", stop_note),
                ("training time", f"{result.train_seconds:.1f} s"),
            ],
        )
    )
    # paths on lines of their own: a table column would cut a long one off on a narrow terminal
    reporter.print(f"outputs: {markup(paths.root)}")
    if page:
        reporter.print(f"report: {markup(page)}")


def write_outputs(
    cfg: DictConfig,
    paths: RunDir,
    reporter: Reporter,
    summary: dict[str, Any],
    device: torch.device,
    parallel: dict[str, Any],
    imbalance: dict[str, Any] | None,
    rows: list[LayerRow] | None,
) -> Path | None:
    """What every task's summary.json ends with (how the run was spread, imbalance, the model's table, provenance),
    written; then report.html when asked. Returns the page's path, or None."""
    summary["parallel"] = parallel
    summary.update(imbalance or {})
    summary["model_summary"] = model_summary(rows or [])
    summary.update(provenance(device, cfg.trainer.precision))
    write_summary(paths.summary_json, summary)
    return _write_page(paths, reporter) if cfg.report.html else None


def _write_page(paths: RunDir, reporter: Reporter) -> Path | None:
    """report.html from the files just written; a page that cannot be written is a warning, not a failed run."""
    try:
        return write_run_page(paths.root)
    except (UserError, OSError) as err:
        reporter.print(f"[yellow]report.html not written: {markup(first_line(err))}[/]")
        return None


def model_summary(rows: list[LayerRow]) -> list[dict[str, Any]]:
    """The model summary table as plain rows for summary.json: each config item (index "3") and, after it, its
    blocks (index "3.1", part_of "3"; not counted again in totals), with output shape, parameters and MACs."""
    plain = []
    for row in rows:
        plain.append(
            {
                "index": str(row.index),
                "layer": row.name,
                "detail": row.detail,
                "output": fmt_shape(row.output_shape),
                "params": row.params,
                "macs": row.macs,
            }
        )
        plain += [
            {
                "index": f"{row.index}.{block.index}",
                "layer": block.name,
                "detail": block.detail,
                "output": fmt_shape(block.output_shape),
                "params": block.params,
                "macs": block.macs,
                "part_of": str(row.index),
            }
            for block in row.blocks
        ]
    return plain


def analyse(cfg: DictConfig, paths: RunDir, data: DataBundle, tested: Tested) -> dict[str, Any]:
    """summary.json's "analysis" from the best weights' test table; with report.plots its three pictures, the worst
    mistakes with their class activation maps (report.cam; computed for those images only, in one batch)."""
    table = tested.best.table
    assert table is not None
    report = cfg.report
    worst = worst_mistakes(table, report.worst)
    shown = report.plots and report.worst > 0  # report.worst=0: no worst_mistakes.png at all
    images = images_at(data.test.images, worst) if shown else None  # only the picture needs them (a stream's:
    cams, cam = None, None  # one more pass over its shards)
    if report.plots and report.cam and worst and tested.model is not None:
        layer = (
            None
            if not cam_available()
            else find_cam_layer(tested.model, data.input_shape, report.cam_layer, tested.layer_names)
        )
        if layer is not None:
            inputs = data.normalize(images.to(data.mean.device)).to(next(tested.model.parameters()).device)
            cams = predicted_maps(tested.model, layer, inputs, table.preds[worst], cfg.trainer.tta)
            cam = {"method": CAM_METHOD, "layer": layer.label}
    analysis = analysis_summary(table, tested.matrix, data.classes, report.worst, report.calibration_bins, cam)
    if images is not None:
        titles = [f"{m['predicted']} p={m['probability']:.2f}\n({m['true']})" for m in analysis["worst_mistakes"]]
        header = f"worst {len(worst)} test mistakes: predicted p=probability (true)" + (
            f", {cam['method']} of the prediction at layer {cam['layer']}" if cam else ""
        )
        plot_worst_mistakes(images, cams, titles, paths.worst_mistakes_png, header)
    if report.plots:
        plot_reliability(analysis["calibration"], paths.reliability_png)
        plot_per_class(analysis["per_class"], paths.per_class_png)
    return analysis


def build_summary(
    cfg: DictConfig,
    data: DataBundle,
    result: FitResult,
    tested: Tested,
    accuracies: list[float | None],
    size: dict[str, int],
    started: float,
    timing: dict[str, float],
    metrics: tuple[dict[str, Any], dict[str, Any]],
) -> dict[str, Any]:
    """Everything a person (or a sweep table) wants to know about a finished run, as plain JSON (provenance
    follows it in summary.json). `metrics` are the best and the last weights' class metrics (Tested.class_metrics).
    """
    best, last = ({summary_key(name): value for name, value in values.items()} for values in metrics)
    return {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "data": {
            "kind": cfg.dataset.get("kind") or "torchvision",
            "layout": data.layout,
            "skipped_images": len(data.skipped),
        },
        "test": {"loss": tested.best.loss, "acc": tested.best.acc, **best, "weights": "best"},
        "test_last": {"loss": tested.last.loss, "acc": tested.last.acc, **last, "weights": "last"},
        "status": "done",
        "best": {
            "monitor": cfg.trainer.checkpoint.monitor,
            "mode": cfg.trainer.checkpoint.mode,
            "value": result.best_value,
            "epoch": result.best_epoch,
        },
        "final_epoch": result.history[-1] if result.history else None,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "stopped": result.stopped,
        "per_class_accuracy": dict(zip(data.classes, accuracies)),
        "confusion_matrix": tested.matrix.tolist() if tested.matrix is not None else None,
        "classes": list(data.classes),
        **size,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "train_seconds": timing["train_seconds"],
        "timing": {**timing, "elapsed_seconds": time.perf_counter() - started},
        "elapsed_seconds": time.perf_counter() - started,
        "precision": cfg.trainer.precision,
        "channels_last": cfg.trainer.channels_last,
        "compile": cfg.trainer.compile,
        "tta": cfg.trainer.tta,
        "seed": cfg.seed,
        "optimization": {  # how batches became optimizer steps
            "effective_batch_size": cfg.trainer.batch_size * cfg.trainer.accumulate,
            "accumulate": cfg.trainer.accumulate,
            "grad_clip": cfg.trainer.grad_clip,
            "ema_decay": cfg.trainer.ema.decay or None,
            "decay_norm_and_bias": cfg.trainer.decay_norm_and_bias,
        },
    }


def stopped_note(result: FitResult) -> str:
    """Why training ended, for the console: all epochs, early stopping, or the time budget."""
    reason, epochs = result.stopped.get("reason"), len(result.history)
    if reason == "time_limit":
        return (
            f"stopped at the time limit ({result.stopped['limit_seconds']:g} s) in epoch {result.stopped['epoch']} "
            f"after {result.stopped['steps_in_epoch']} of {result.stopped['steps_per_epoch']} steps"
        )
    if reason == "early_stopping":
        return f"stopped early after epoch {epochs}"
    return f"ran all {epochs} epochs"
