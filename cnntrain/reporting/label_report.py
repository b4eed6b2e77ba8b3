"""The end of a multi-label run: its test metrics to the loggers, its pictures, summary.json and the result tables.

The multi-label view beside cnntrain.reporting.report (whose confusion matrix, per-class accuracy and worst
mistakes assume one true class per image): mAP, F1 / precision / recall at the thresholds, exact-match accuracy
and the Hamming loss, each label's AP, F1 and support, and the test images whose predicted set is furthest
from their true set. Written from the scores of the test pass (no second pass over the data).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from rich.table import Table

from cnntrain.config.names import LABEL_METRICS, TASK_MULTILABEL, label_set_monitor, summary_key
from cnntrain.data.containers import images_at
from cnntrain.data.loading import DataBundle
from cnntrain.models.builder import LayerRow
from cnntrain.reporting.console import Reporter, format_metric
from cnntrain.reporting.label_metrics import multilabel_metrics
from cnntrain.reporting.label_plots import plot_label_bars, plot_pr_curves, plot_worst_sets
from cnntrain.reporting.loggers import Logger
from cnntrain.reporting.metrics import EvalResult, FitResult
from cnntrain.reporting.plots import plot_curves
from cnntrain.reporting.report import Tested, build_summary, write_outputs
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.tables import key_value_table
from cnntrain.reporting.text import markup

WORST_LABELS = 4  # labels whose precision-recall curves are drawn


def label_results(result: EvalResult, classes: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(test metrics by name, per-label metrics) of one multi-label test pass."""
    assert result.scores is not None and result.labels is not None and result.thresholds is not None
    values, per_label = multilabel_metrics(result.scores, result.labels, result.thresholds, classes)
    values["test/loss"] = result.loss
    return values, per_label


def report_multilabel(
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
    """Log the test metrics, draw the pictures, write summary.json and print the result tables."""
    best, per_label = label_results(tested.best, data.classes)
    last, _ = label_results(tested.last, data.classes)
    for logger in loggers:
        logger.log_test(best, len(result.history), lambda: None)
    if cfg.report.plots:
        plot_curves(result.history, paths.plots[0])
    worst = label_analysis(cfg, paths, data, tested.best, per_label)["worst_errors"]
    summary = build_summary(cfg, data, result, tested, [], size, started, timing, ({}, {}))
    for key in ("per_class_accuracy", "confusion_matrix"):
        summary.pop(key)
    summary["task"] = TASK_MULTILABEL
    summary["best"] = {
        **summary["best"],
        **dict(
            zip(("monitor", "mode"), label_set_monitor(cfg.trainer.checkpoint.monitor, cfg.trainer.checkpoint.mode))
        ),
    }
    summary["test"] = {**{summary_key(k): v for k, v in best.items()}, "weights": "best"}
    summary["test_last"] = {**{summary_key(k): v for k, v in last.items()}, "weights": "last"}
    summary["thresholds"] = dict(zip(data.classes, tested.best.thresholds or []))
    summary["per_label"] = per_label
    summary["analysis"] = {"worst_errors": worst}
    page = write_outputs(cfg, paths, reporter, summary, device, parallel, imbalance, rows)
    reporter.print(per_label_table(per_label))
    stop_note = (
        f"stopped early after epoch {len(result.history)}"
        if result.stopped_early
        else f"ran all {len(result.history)} epochs"
    )
    monitor, mode = label_set_monitor(cfg.trainer.checkpoint.monitor, cfg.trainer.checkpoint.mode)
    reporter.print(
        key_value_table(
            "result",
            [
                ("test/map (best checkpoint)", format_metric("map", best["test/map"])),
                ("test/acc, exact match (best checkpoint)", format_metric("acc", best["test/acc"])),
                *(
                    (f"{name} (best checkpoint)", format_metric(name, best[name]))
                    for name in LABEL_METRICS
                    if name != "test/map"
                ),
                ("test/loss (best checkpoint)", format_metric("loss", best["test/loss"])),
                ("test/map (last epoch)", format_metric("map", last["test/map"])),
                (f"best {monitor}", f"{format_metric(monitor, result.best_value)} at epoch {result.best_epoch}"),
                (
                    "thresholds",
                    "tuned per label on val" if cfg.trainer.threshold == "tune" else str(cfg.trainer.threshold),
                ),
                ("epochs", stop_note),
                ("training time", f"{result.train_seconds:.1f} s"),
                ("outputs", str(paths.root)),
                *((("report", str(page)),) if page else ()),
            ],
        )
    )


def label_analysis(
    cfg: DictConfig, paths: RunDir, data: DataBundle, result: EvalResult, per_label: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The analysis of a multi-label test pass (the end of a run and cnntrain-eval alike): the largest errors, and
    with report.plots each label's AP and F1, the worst labels' precision-recall curves and the worst images."""
    worst = worst_errors(result, data.classes, cfg.report.worst)
    if cfg.report.plots:
        plot_label_bars(per_label, paths.per_class_png)
        plot_pr_curves(result.scores, result.labels, data.classes, per_label, paths.pr_curves_png, WORST_LABELS)
        if worst:
            images = images_at(data.test.images, [w["index"] for w in worst])
            plot_worst_sets(images, worst, paths.worst_mistakes_png)
    return {"worst_errors": worst}


def label_evaluation(
    result: EvalResult, classes: list[str], reporter: Reporter, head: list[tuple[str, str]]
) -> dict[str, Any]:
    """cnntrain-eval of a multi-label model: print the per-label and result tables, return the summary's keys."""
    values, per_label = label_results(result, classes)
    reporter.print(per_label_table(per_label))
    names = ("test/map", "test/acc", *LABEL_METRICS[1:], "test/loss")
    reporter.print(key_value_table("evaluation", [*head, *((n, format_metric(n, values[n])) for n in names)]))
    test = {**{summary_key(k): v for k, v in values.items()}, "images": len(result.labels)}
    return {
        "task": TASK_MULTILABEL,
        "test": test,
        "per_label": per_label,
        "thresholds": dict(zip(classes, result.thresholds or [])),
        "classes": list(classes),
    }


def worst_errors(result: EvalResult, classes: list[str], count: int) -> list[dict[str, Any]]:
    """The test images whose predicted set is furthest from the true one: ranked by their summed BCE loss, with
    the true and the predicted labels and each predicted label's score."""
    if result.scores is None or result.labels is None or count == 0:
        return []
    scores, truth = result.scores.double().clamp(1e-7, 1 - 1e-7), result.labels.double()
    losses = -(truth * scores.log() + (1 - truth) * (1 - scores).log()).sum(1)
    wrong = (result.preds != (truth > 0.5).to(result.preds.dtype)).any(1)
    order = [i for i in torch.argsort(losses, descending=True, stable=True).tolist() if bool(wrong[i])][:count]
    return [
        {
            "index": i,
            "loss": float(losses[i]),
            "true": [classes[k] for k in (truth[i] > 0.5).nonzero().squeeze(1).tolist()],
            "predicted": {
                classes[k]: round(float(scores[i, k]), 4) for k in result.preds[i].nonzero().squeeze(1).tolist()
            },
        }
        for i in order
    ]


def per_label_table(per_label: dict[str, dict[str, Any]]) -> Table:
    """Each label's support, AP, F1, precision, recall and threshold on the test split, worst AP first."""
    table = Table(title="per-label test metrics (worst AP first)", title_justify="left")
    for name, justify in (
        ("label", "left"),
        ("images", "right"),
        ("AP", "right"),
        ("F1", "right"),
        ("precision", "right"),
        ("recall", "right"),
        ("threshold", "right"),
    ):
        table.add_column(name, justify=justify)
    for name, m in sorted(per_label.items(), key=lambda item: (_or(item[1]["ap"]), item[0])):
        table.add_row(
            markup(name),
            str(m["support"]),
            *(_cell(m[key]) for key in ("ap", "f1", "precision", "recall")),
            f"{m['threshold']:.3f}",
        )
    return table


def _or(value: float | None) -> float:
    return -1.0 if value is None else value


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
