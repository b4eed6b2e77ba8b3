"""report.html: one self-contained page per run, per sweep, and for cnntrain-compare.

A run's page is a view over what its directory already holds: summary.json (results, per-class metrics,
the analysis when there is one, the model summary, provenance), the PNGs the run drew, and .hydra/config.yaml.
Nothing is trained or drawn here and torch is not imported, so a finished run's page can be written again
at any time (write_run_page, `cnntrain-report RUN_DIR`). A part whose data is absent is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntrain.config.names import CLASS_METRICS, TASK_MULTILABEL, TEST_BALANCED_ACC, TEST_MACRO_F1, summary_key
from cnntrain.errors import UserError
from cnntrain.reporting.console import format_macs, format_metric
from cnntrain.reporting.html import (
    cards,
    esc,
    figure,
    folded,
    number,
    page,
    read_text,
    section,
    table,
    write_page,
)
from cnntrain.reporting.run_dir import RunDir, read_summary
from cnntrain.reporting.text import html_text

if TYPE_CHECKING:
    pass

MOST_CONFUSED = 10  # pairs listed under the confusion matrix


def metric(name: str, value: Any) -> str:
    value = number(value)
    return "-" if value is None else format_metric(name, value)


def get(data: Any, *keys: str) -> Any:
    """data[k1][k2]..., None where a level is missing or not a mapping (a hand-edited file)."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def fixed(value: Any, digits: int = 3) -> str:
    value = number(value)
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- per-class metrics from the confusion matrix

def per_class_from_matrix(classes: list[Any], matrix: Any) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of each class from summary.json's confusion matrix [true][predicted]
    (the page's fallback until the run has an analysis); {} when the matrix does not fit the classes."""
    n = len(classes)
    if not (isinstance(matrix, list) and len(matrix) == n
            and all(isinstance(row, list) and len(row) == n and all(number(v) is not None for v in row)
                    for row in matrix)):
        return {}
    result = {}
    for i, name in enumerate(classes):
        support, predicted, hits = sum(matrix[i]), sum(row[i] for row in matrix), matrix[i][i]
        precision = hits / predicted if predicted else None
        recall = hits / support if support else None
        f1 = None if precision is None or recall is None else \
            (2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        result[str(name)] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return result


def confused_from_matrix(classes: list[Any], matrix: Any) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, most first."""
    if not per_class_from_matrix(classes, matrix):
        return []
    pairs = [{"true": str(classes[i]), "predicted": str(classes[j]), "count": matrix[i][j]}
             for i in range(len(classes)) for j in range(len(classes)) if i != j and matrix[i][j] > 0]
    return sorted(pairs, key=lambda p: -p["count"])[:MOST_CONFUSED]


# ---------------------------------------------------------------- the run page

def run_page(root: Path) -> str:
    """The page of the run in `root`, from the files there."""
    paths = RunDir(root)
    summary = read_summary(paths.summary_json)
    if not summary:
        raise UserError(f"{root} has no summary.json: the run has not finished, so there is no page to write")
    if summary.get("task") == TASK_MULTILABEL:  # a set of labels per image: the view beside this one
        from cnntrain.reporting.label_page import label_run_page

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
        _augment(paths, root),
        _misclassified(paths, root),
        _model(summary),
        _config(paths, root),
        _provenance(summary),
    ]
    return page(title, subtitle, [part for part in parts if part is not None])


def run_fragment(root: Path) -> str:
    """The run's results, curves and confusion matrix as a piece of HTML for a notebook cell (Run._repr_html_):
    the page's own sections, pictures inlined, without the page around them."""
    summary = read_summary(RunDir(root).summary_json)
    if not summary:
        return f'<p>run {esc(str(Path(root).resolve()))}: no summary.json yet (running, or stopped before the end)</p>'
    classes = summary.get("classes") if isinstance(summary.get("classes"), list) else []
    analysis = summary.get("analysis") if isinstance(summary.get("analysis"), dict) else {}
    title = f"{summary.get('model', '?')} on {summary.get('dataset', '?')} · {Path(root).resolve()}"
    parts = [_results(summary)]
    if summary.get("status") == "done":
        parts.append(_pictures(RunDir(root), root, summary, classes, analysis))
    return f"<div><h3>{esc(title)}</h3>" + "".join(body for _, _, body in parts) + "</div>"


def write_run_page(root: Path) -> Path:
    """Write (or write again) report.html in the run directory `root`; returns its path."""
    root = Path(root)
    return write_page(root, RunDir(root).report_html, run_page(root))


def _results(summary: dict[str, Any]) -> tuple[str, str, str]:
    if summary.get("status") != "done":
        return section("results", "Result", f'<p class="note">the run {esc(summary.get("status", "?"))}: '
                                            f'{esc(summary.get("error", "no test metrics"))}</p>')
    best, last = get(summary, "test") or {}, get(summary, "test_last") or {}
    names = [("test/acc", "acc"), ("test/loss", "loss")] + [(name, summary_key(name)) for name in CLASS_METRICS
                                                             if summary_key(name) in best]
    rows = [(name, metric(name, best.get(key)), metric(name, last.get(key))) for name, key in names]
    monitor = get(summary, "best", "monitor") or "?"
    epochs = summary.get("epochs_run")
    sizes = get(summary, "sizes") or {}
    timing = get(summary, "timing") or {}
    facts = [
        (f"best {monitor}", f"{metric(str(monitor), get(summary, 'best', 'value'))} at epoch "
                            f"{get(summary, 'best', 'epoch')}"),
        ("epochs", f"{epochs}" + (" (stopped early)" if summary.get("stopped_early") else "")),
        ("images train / val / test", " / ".join(str(sizes.get(k, "-")) for k in ("train", "val", "test"))),
        ("parameters", f"{number(summary.get('params')) or 0:,}" + (
            f" ({summary['params_frozen']:,} frozen)" if number(summary.get("params_frozen")) else "")),
        ("multiply-adds per image", format_macs(int(number(summary.get("macs_per_image")) or 0))),
        ("time: start-up / training / evaluation / all",
         " / ".join(fixed(timing.get(k), 1) + " s" for k in ("startup_seconds", "train_seconds", "eval_seconds",
                                                              "elapsed_seconds"))),
        ("seed, precision, device", f"{summary.get('seed', '-')}, {summary.get('precision', '-')}, "
                                    f"{summary.get('device', '-')}"),
    ]
    headline = cards([("test accuracy (best weights)", metric("test/acc", best.get("acc"))),
                      ("balanced accuracy", metric(TEST_BALANCED_ACC, best.get(summary_key(TEST_BALANCED_ACC)))),
                      ("macro-F1", metric(TEST_MACRO_F1, best.get(summary_key(TEST_MACRO_F1)))),
                      ("test loss", metric("test/loss", best.get("loss")))])
    body = (headline + '<div class="row"><div>'
            + table(["test metric", "best checkpoint", "last epoch"], rows, numeric=(1, 2))
            + "</div><div>" + table(None, facts, numeric=(1,)) + "</div></div>")
    return section("results", "Result", body)


def _pictures(paths: RunDir, root: Path, summary: dict[str, Any], classes: list[Any],
              analysis: dict[str, Any]) -> tuple[str, str, str]:
    curves, confusion, _ = paths.plots
    no_plot = "not in the run directory (report.plots=false?)"
    confused = analysis.get("most_confused")
    if not isinstance(confused, list):
        confused = confused_from_matrix(classes, summary.get("confusion_matrix"))
    confused_rows = [(get(p, "true"), get(p, "predicted"), get(p, "count")) for p in confused if isinstance(p, dict)]
    confused_html = table(["true class", "predicted as", "test images"], confused_rows, numeric=(2,)) \
        if confused_rows else '<p class="note">no test image was confused</p>'
    body = (figure(curves, root, "loss, accuracy and learning rate per epoch (curves.png)", f"curves.png {no_plot}")
            + '<div class="row"><div>'
            + figure(confusion, root, "confusion matrix, each row (true class) sums to 1 (confusion_matrix.png)",
                     f"confusion_matrix.png {no_plot}")
            + "</div><div><h3>Most confused</h3>" + confused_html + "</div></div>")
    return section("curves", "Curves and confusion", body)


def _per_class(paths: RunDir, root: Path, summary: dict[str, Any], classes: list[Any],
               analysis: dict[str, Any]) -> tuple[str, str, str] | None:
    per_class = analysis.get("per_class")
    note = "from the run's analysis"
    if not isinstance(per_class, dict) or not per_class:
        per_class = per_class_from_matrix(classes, summary.get("confusion_matrix"))
        note = "from the confusion matrix of the best weights"
    if not per_class:
        return None
    rows = [(name, fixed(get(m, "precision")), fixed(get(m, "recall")), fixed(get(m, "f1")),
             get(m, "support") if get(m, "support") is not None else "-") for name, m in per_class.items()]
    weak = [i for i, (_, _, recall, _, _) in enumerate(rows) if recall != "-" and float(recall) < 0.5]
    body = (f'<p class="note">test split, {esc(note)}; recall under 0.5 in red</p><div class="row"><div>'
            + table(["class", "precision", "recall", "F1", "test images"], rows, numeric=(1, 2, 3, 4), bad=weak)
            + "</div><div>" + figure(paths.per_class_png, root, "per-class metrics (per_class.png)")
            + "</div></div>")
    return section("per-class", "Per class", body)


def _worst(paths: RunDir, root: Path, analysis: dict[str, Any]) -> tuple[str, str, str] | None:
    worst = analysis.get("worst_mistakes")
    picture = figure(paths.worst_mistakes_png, root, "the most confident mistakes (worst_mistakes.png)")
    if not isinstance(worst, list) and not picture:
        return None
    cam = analysis.get("cam")
    cam_note = (f'<p class="note">class activation maps: {esc(get(cam, "method"))} at layer '
                f'{esc(get(cam, "layer"))}</p>' if isinstance(cam, dict) else "")
    rows = [(get(w, "index"), get(w, "true"), get(w, "predicted"), fixed(get(w, "probability")),
             fixed(get(w, "true_probability")), fixed(get(w, "loss"))) for w in worst or [] if isinstance(w, dict)]
    listing = table(["test image", "true", "predicted", "p(predicted)", "p(true)", "loss"], rows,
                    numeric=(0, 3, 4, 5)) if rows else ""
    return section("worst", "Worst mistakes", picture + cam_note + (folded(f"{len(rows)} mistakes", listing, True)
                                                                     if listing else ""))


def _calibration(paths: RunDir, root: Path, analysis: dict[str, Any]) -> tuple[str, str, str] | None:
    calibration = analysis.get("calibration")
    picture = figure(paths.reliability_png, root, "reliability diagram (reliability.png)")
    if not isinstance(calibration, dict) and not picture:
        return None
    calibration = calibration if isinstance(calibration, dict) else {}
    ece = number(calibration.get("ece"))
    lists = [calibration.get(key) if isinstance(calibration.get(key), list) else []
             for key in ("confidence", "accuracy", "count")]
    rows = [(i + 1, fixed(c), fixed(a), n) for i, (c, a, n) in enumerate(zip(*lists))]
    body = (cards([("expected calibration error", "-" if ece is None else f"{ece:.4f}"),
                   ("confidence bins", str(calibration.get("bins", len(rows))))])
            + '<p class="note">ECE: the gap between confidence and accuracy, averaged over the bins by their '
              "images (0 is perfectly calibrated)</p>" + picture
            + (folded("bins", table(["bin", "mean confidence", "accuracy", "test images"], rows,
                                    numeric=(0, 1, 2, 3))) if rows else ""))
    return section("calibration", "Calibration", body)


def _augment(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    picture = figure(paths.augment_preview, root, "the first training images after dataset.augment "
                                                  "(augment_preview.png)")
    return section("augment", "Augmentation", picture) if picture else None


def _misclassified(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    picture = figure(paths.plots[2], root, "misclassified test images: predicted (true) (misclassified.png)")
    return section("misclassified", "Misclassified", picture) if picture else None


def _model(summary: dict[str, Any]) -> tuple[str, str, str] | None:
    layers = summary.get("model_summary")
    if not isinstance(layers, list) or not layers:
        return None
    rows, params, macs = [], 0, 0
    for layer in (layer for layer in layers if isinstance(layer, dict)):
        p, m = int(number(layer.get("params")) or 0), int(number(layer.get("macs")) or 0)
        if layer.get("part_of") is None:
            params, macs = params + p, macs + m
        name = ("\u2003" if layer.get("part_of") is not None else "") + str(layer.get("layer", "?"))
        rows.append((layer.get("index", ""), name, layer.get("detail", ""), layer.get("output", ""), f"{p:,}",
                     format_macs(m)))
    body = table(["#", "layer", "details", "output shape", "params", "MACs"], rows, numeric=(0, 3, 4, 5),
                 footer=["", "total", "", "", f"{params:,}", format_macs(macs)])
    return section("model", f"Model {summary.get('model', '')}", folded(f"{len(rows)} rows", body, True))


def _config(paths: RunDir, root: Path) -> tuple[str, str, str] | None:
    config = read_text(paths.config_yaml, root)
    overrides = read_text(paths.overrides_yaml, root)
    if config is None:
        return None
    shown = folded("overrides on the command line", f"<pre>{html_text(overrides, keep_lines=True)}</pre>", True)
    body = (shown if overrides else "") + folded(".hydra/config.yaml",
                                                 f"<pre>{html_text(config, keep_lines=True)}</pre>")
    return section("config", "Config", body)


def _provenance(summary: dict[str, Any]) -> tuple[str, str, str] | None:
    rows: list[tuple[str, Any]] = []
    versions = summary.get("versions")
    if isinstance(versions, dict):
        rows += [(name, version) for name, version in versions.items()]
    git = summary.get("git")
    if isinstance(git, dict):
        rows.append(("git commit", f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}"))
    for key in ("device", "device_name", "threads"):
        if key in summary:
            rows.append((key.replace("_", " "), summary[key]))
    cpu = summary.get("cpu")
    if isinstance(cpu, dict):
        rows += [("cpu", cpu.get("model")), ("cpu instruction set", cpu.get("capability"))]
        if isinstance(cpu.get("isa_flags"), list):
            rows.append(("cpu vector flags", " ".join(str(flag) for flag in cpu["isa_flags"])))
        if cpu.get("dispatch_env"):
            rows.append(("cpu dispatch capped by", str(cpu["dispatch_env"])))
    platform = summary.get("platform")
    if isinstance(platform, dict):
        rows += [(f"platform {key}", value) for key, value in platform.items()]
    deterministic = summary.get("deterministic")
    if isinstance(deterministic, dict):
        rows.append(("deterministic", ", ".join(f"{k}={v}" for k, v in deterministic.items())))
    command = summary.get("command")
    if isinstance(command, list):
        rows.append(("command", " ".join(str(part) for part in command)))
    if not rows:
        return None
    return section("provenance", "Provenance", table(None, rows))
