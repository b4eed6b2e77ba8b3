"""report.html of a run: one self-contained page (a multi-label run's is label_page.py's view; a sweep's and
cnntrain-compare's are sweep_page.py's).

A run's page is a view over what its directory already holds: summary.json (results, per-class metrics,
the analysis when there is one, the model summary, provenance), the PNGs the run drew, and .hydra/config.yaml.
Nothing is trained or drawn here and torch is not imported, so a finished run's page can be written again
at any time (write_run_page, `cnntrain-report RUN_DIR`). A part whose data is absent is left out.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

from cnntrain.config.names import CLASS_METRICS, TASK_MULTILABEL, TEST_BALANCED_ACC, TEST_MACRO_F1, summary_key
from cnntrain.errors import UserError
from cnntrain.reporting.bench_section import bench_section
from cnntrain.reporting.class_scores import class_scores
from cnntrain.reporting.console import format_macs
from cnntrain.reporting.html import cards, esc, figure, folded, number, page, section, table, write_page
from cnntrain.reporting.label_page import label_run_page
from cnntrain.reporting.page_sections import (
    augment_section,
    config_section,
    fixed,
    get,
    metric,
    model_section,
    provenance_section,
)
from cnntrain.reporting.run_dir import RunDir, read_summary

MOST_CONFUSED = 10  # pairs listed under the confusion matrix


# ---------------------------------------------------------------- per-class metrics from the confusion matrix


def per_class_from_matrix(classes: list[Any], matrix: Any) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of each class from summary.json's confusion matrix [true][predicted]
    (the page's fallback until the run has an analysis); {} when the matrix does not fit the classes."""
    n = len(classes)
    if not (
        isinstance(matrix, list)
        and len(matrix) == n
        and all(isinstance(row, list) and len(row) == n and all(number(v) is not None for v in row) for row in matrix)
    ):
        return {}
    result = {}
    for i, name in enumerate(classes):
        support, predicted, hits = sum(matrix[i]), sum(row[i] for row in matrix), matrix[i][i]
        result[str(name)] = {**class_scores(hits, predicted, support), "support": support}
    return result


def confused_from_matrix(classes: list[Any], matrix: Any) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, most first."""
    if not per_class_from_matrix(classes, matrix):
        return []
    n = len(classes)  # nlargest keeps MOST_CONFUSED cells, not n^2 (equal counts keep their order, as sorted does)
    cells = ((matrix[i][j], i, j) for i in range(n) for j in range(n) if i != j and matrix[i][j] > 0)
    top = heapq.nlargest(MOST_CONFUSED, cells, key=lambda cell: cell[0])
    return [{"true": str(classes[i]), "predicted": str(classes[j]), "count": count} for count, i, j in top]


# ---------------------------------------------------------------- the run page


def run_page(root: Path) -> str:
    """The page of the run in `root`, from the files there."""
    paths = RunDir(root)
    summary = read_summary(paths.summary_json)
    if not summary:
        raise UserError(f"{root} has no summary.json: the run has not finished, so there is no page to write")
    if summary.get("task") == TASK_MULTILABEL:  # a set of labels per image: the view beside this one
        return label_run_page(root, summary)
    classes = summary.get("classes") if isinstance(summary.get("classes"), list) else []
    analysis = summary.get("analysis") if isinstance(summary.get("analysis"), dict) else {}
    title = f"{summary.get('model', '?')} on {summary.get('dataset', '?')}"
    subtitle = f"run {root.resolve()} · status {summary.get('status', '?')}"
    parts = [
        _results(summary),
        _pictures(paths, root, summary, classes, analysis),
        _per_class(paths, root, summary, classes, analysis),
        _worst(paths, root, analysis),
        _calibration(paths, root, analysis),
        augment_section(paths, root),
        _misclassified(paths, root),
        bench_section(paths),
        model_section(summary),
        config_section(paths, root),
        provenance_section(summary),
    ]
    return page(title, subtitle, [part for part in parts if part is not None])


def run_fragment(root: Path) -> str:
    """The run's results, curves and confusion matrix as a piece of HTML for a notebook cell (Run._repr_html_):
    the page's own sections, pictures inlined, without the page around them."""
    summary = read_summary(RunDir(root).summary_json)
    if not summary:
        return f"<p>run {esc(str(Path(root).resolve()))}: no summary.json yet (running, or stopped before the end)</p>"
    classes = summary.get("classes") if isinstance(summary.get("classes"), list) else []
    analysis = summary.get("analysis") if isinstance(summary.get("analysis"), dict) else {}
    title = f"{summary.get('model', '?')} on {summary.get('dataset', '?')} · {Path(root).resolve()}"
    parts = [_results(summary)]
    if summary.get("status") == "done":
        parts.append(_pictures(RunDir(root), root, summary, classes, analysis))
    return f"<div><h3>{esc(title)}</h3>" + "".join(body for _, _, body in parts) + "</div>"


def analysis_sections(paths: RunDir, summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The analysis's sections of a page (per class, worst mistakes, calibration) over `summary` and the pictures
    in `paths`: the run's page and cnntrain-eval's (eval_page.py) share them."""
    classes = summary.get("classes") if isinstance(summary.get("classes"), list) else []
    analysis = summary.get("analysis") if isinstance(summary.get("analysis"), dict) else {}
    parts = [
        _per_class(paths, paths.root, summary, classes, analysis),
        _worst(paths, paths.root, analysis),
        _calibration(paths, paths.root, analysis),
    ]
    return [part for part in parts if part is not None]


def write_run_page(root: Path) -> Path:
    """Write (or write again) report.html in the run directory `root`; returns its path."""
    root = Path(root)
    return write_page(root, RunDir(root).report_html, run_page(root))


def _results(summary: dict[str, Any]) -> tuple[str, str, str]:
    if summary.get("status") != "done":
        return section(
            "results",
            "Result",
            f'<p class="note">the run {esc(summary.get("status", "?"))}: '
            f"{esc(summary.get('error', 'no test metrics'))}</p>",
        )
    best, last = get(summary, "test") or {}, get(summary, "test_last") or {}
    names = [("test/acc", "acc"), ("test/loss", "loss")] + [
        (name, summary_key(name)) for name in CLASS_METRICS if summary_key(name) in best
    ]
    rows = [(name, metric(name, best.get(key)), metric(name, last.get(key))) for name, key in names]
    monitor = get(summary, "best", "monitor") or "?"
    epochs = summary.get("epochs_run")
    sizes = get(summary, "sizes") or {}
    timing = get(summary, "timing") or {}
    facts = [
        (
            f"best {monitor}",
            f"{metric(str(monitor), get(summary, 'best', 'value'))} at epoch {get(summary, 'best', 'epoch')}",
        ),
        ("epochs", f"{epochs}" + (" (stopped early)" if summary.get("stopped_early") else "")),
        ("images train / val / test", " / ".join(str(sizes.get(k, "-")) for k in ("train", "val", "test"))),
        (
            "parameters",
            f"{number(summary.get('params')) or 0:,}"
            + (f" ({summary['params_frozen']:,} frozen)" if number(summary.get("params_frozen")) else ""),
        ),
        ("multiply-adds per image", format_macs(int(number(summary.get("macs_per_image")) or 0))),
        (
            "time: start-up / training / evaluation / all",
            " / ".join(
                fixed(timing.get(k), 1) + " s"
                for k in ("startup_seconds", "train_seconds", "eval_seconds", "elapsed_seconds")
            ),
        ),
        (
            "seed, precision, device",
            f"{summary.get('seed', '-')}, {summary.get('precision', '-')}, {summary.get('device', '-')}",
        ),
    ]
    headline = cards(
        [
            ("test accuracy (best weights)", metric("test/acc", best.get("acc"))),
            ("balanced accuracy", metric(TEST_BALANCED_ACC, best.get(summary_key(TEST_BALANCED_ACC)))),
            ("macro-F1", metric(TEST_MACRO_F1, best.get(summary_key(TEST_MACRO_F1)))),
            ("test loss", metric("test/loss", best.get("loss"))),
        ]
    )
    body = (
        headline
        + '<div class="row"><div>'
        + table(["test metric", "best checkpoint", "last epoch"], rows, numeric=(1, 2))
        + "</div><div>"
        + table(None, facts, numeric=(1,))
        + "</div></div>"
    )
    return section("results", "Result", body)


def _pictures(
    paths: RunDir, root: Path, summary: dict[str, Any], classes: list[Any], analysis: dict[str, Any]
) -> tuple[str, str, str]:
    curves, confusion, _ = paths.plots
    no_plot = "not in the run directory (report.plots=false?)"
    confused = analysis.get("most_confused")
    if not isinstance(confused, list):
        confused = confused_from_matrix(classes, summary.get("confusion_matrix"))
    confused_rows = [(get(p, "true"), get(p, "predicted"), get(p, "count")) for p in confused if isinstance(p, dict)]
    confused_html = (
        table(["true class", "predicted as", "test images"], confused_rows, numeric=(2,))
        if confused_rows
        else '<p class="note">no test image was confused</p>'
    )
    body = (
        figure(curves, root, "loss, accuracy and learning rate per epoch (curves.png)", f"curves.png {no_plot}")
        + '<div class="row"><div>'
        + figure(
            confusion,
            root,
            "confusion matrix, each row (true class) sums to 1 (confusion_matrix.png)",
            f"confusion_matrix.png {no_plot}",
        )
        + "</div><div><h3>Most confused</h3>"
        + confused_html
        + "</div></div>"
    )
    return section("curves", "Curves and confusion", body)


def _per_class(
    paths: RunDir, root: Path, summary: dict[str, Any], classes: list[Any], analysis: dict[str, Any]
) -> tuple[str, str, str] | None:
    per_class = analysis.get("per_class")
    note = "from the run's analysis"
    if not isinstance(per_class, dict) or not per_class:
        per_class = per_class_from_matrix(classes, summary.get("confusion_matrix"))
        note = "from the confusion matrix of the best weights"
    if not per_class:
        return None
    rows = [
        (
            name,
            fixed(get(m, "precision")),
            fixed(get(m, "recall")),
            fixed(get(m, "f1")),
            get(m, "support") if get(m, "support") is not None else "-",
        )
        for name, m in per_class.items()
    ]
    weak = [i for i, (_, _, recall, _, _) in enumerate(rows) if recall != "-" and float(recall) < 0.5]
    body = (
        f'<p class="note">test split, {esc(note)}; recall under 0.5 in red</p><div class="row"><div>'
        + table(["class", "precision", "recall", "F1", "test images"], rows, numeric=(1, 2, 3, 4), bad=weak)
        + "</div><div>"
        + figure(paths.per_class_png, root, "per-class metrics (per_class.png)")
        + "</div></div>"
    )
    return section("per-class", "Per class", body)


def _worst(paths: RunDir, root: Path, analysis: dict[str, Any]) -> tuple[str, str, str] | None:
    worst = analysis.get("worst_mistakes")
    picture = figure(paths.worst_mistakes_png, root, "the most confident mistakes (worst_mistakes.png)")
    if not isinstance(worst, list) and not picture:
        return None
    cam = analysis.get("cam")
    cam_note = (
        f'<p class="note">class activation maps: {esc(get(cam, "method"))} at layer {esc(get(cam, "layer"))}</p>'
        if isinstance(cam, dict)
        else ""
    )
    rows = [
        (
            get(w, "index"),
            get(w, "true"),
            get(w, "predicted"),
            fixed(get(w, "probability")),
            fixed(get(w, "true_probability")),
            fixed(get(w, "loss")),
        )
        for w in worst or []
        if isinstance(w, dict)
    ]
    listing = (
        table(["test image", "true", "predicted", "p(predicted)", "p(true)", "loss"], rows, numeric=(0, 3, 4, 5))
        if rows
        else ""
    )
    return section(
        "worst",
        "Worst mistakes",
        picture + cam_note + (folded(f"{len(rows)} mistakes", listing, True) if listing else ""),
    )


def _calibration(paths: RunDir, root: Path, analysis: dict[str, Any]) -> tuple[str, str, str] | None:
    calibration = analysis.get("calibration")
    picture = figure(paths.reliability_png, root, "reliability diagram (reliability.png)")
    if not isinstance(calibration, dict) and not picture:
        return None
    calibration = calibration if isinstance(calibration, dict) else {}
    ece = number(calibration.get("ece"))
    lists = [
        calibration.get(key) if isinstance(calibration.get(key), list) else []
        for key in ("confidence", "accuracy", "count")
    ]
    rows = [(i + 1, fixed(c), fixed(a), n) for i, (c, a, n) in enumerate(zip(*lists))]
    body = (
        cards(
            [
                ("expected calibration error", "-" if ece is None else f"{ece:.4f}"),
                ("confidence bins", str(calibration.get("bins", len(rows)))),
            ]
        )
        + '<p class="note">ECE: the gap between confidence and accuracy, averaged over the bins by their '
        "images (0 is perfectly calibrated)</p>"
        + picture
        + (
            folded("bins", table(["bin", "mean confidence", "accuracy", "test images"], rows, numeric=(0, 1, 2, 3)))
            if rows
            else ""
        )
    )
    return section("calibration", "Calibration", body)


def _misclassified(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    picture = figure(paths.plots[2], root, "misclassified test images: predicted (true) (misclassified.png)")
    return section("misclassified", "Misclassified", picture) if picture else None
