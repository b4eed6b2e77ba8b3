"""report.html of a multi-label run: the view beside the single-label page (cnntrain.reporting.page), over the same
run directory: mAP and the threshold metrics, each label's AP / F1 / support / threshold, the pictures of the
labels and of the test images with the largest errors. The parts both kinds of run share (augmentation, model,
config, provenance) come from page_sections.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.config.names import LABEL_METRICS, summary_key
from cnntrain.reporting.bench_section import bench_section
from cnntrain.reporting.html import cards, figure, folded, page, section, table
from cnntrain.reporting.page_sections import (
    augment_section,
    config_section,
    fixed,
    get,
    metric,
    model_section,
    provenance_section,
)
from cnntrain.reporting.run_dir import RunDir

NAMES = (
    ("test/map", "mAP"),
    ("test/acc", "exact match"),
    *((name, summary_key(name)) for name in LABEL_METRICS[1:]),
    ("test/loss", "loss"),
)


def label_run_page(root: Path, summary: dict[str, Any]) -> str:
    """The page of the multi-label run in `root`, from its summary.json and pictures."""
    paths = RunDir(root)
    best, last = get(summary, "test") or {}, get(summary, "test_last") or {}
    rows = [
        (name, metric(name, best.get(summary_key(name))), metric(name, last.get(summary_key(name))))
        for name, _ in NAMES
    ]
    monitor = get(summary, "best", "monitor") or "?"
    headline = cards(
        [
            ("test mAP (best weights)", metric("test/map", best.get("map"))),
            ("exact match", metric("test/acc", best.get("acc"))),
            ("micro-F1", metric("test/micro_f1", best.get("micro_f1"))),
            ("Hamming loss", metric("test/hamming_loss", best.get("hamming_loss"))),
        ]
    )
    facts = [
        (
            f"best {monitor}",
            f"{metric(str(monitor), get(summary, 'best', 'value'))} at epoch {get(summary, 'best', 'epoch')}",
        ),
        ("epochs", str(summary.get("epochs_run"))),
        ("labels", str(len(summary.get("classes") or []))),
    ]
    results = section(
        "results",
        "Result",
        headline
        + '<div class="row"><div>'
        + table(["test metric", "best checkpoint", "last epoch"], rows, numeric=(1, 2))
        + "</div><div>"
        + table(None, facts, numeric=(1,))
        + "</div></div>"
        + figure(paths.plots[0], root, "loss, accuracy and learning rate per epoch (curves.png)"),
    )
    labels, errors = label_sections(summary, paths, root)
    parts = [
        results,
        labels,
        errors,
        bench_section(paths),
        augment_section(paths, root),
        model_section(summary),
        config_section(paths, root),
        provenance_section(summary),
    ]
    title = f"{summary.get('model', '?')} on {summary.get('dataset', '?')} (multi-label)"
    return page(
        title,
        f"run {root.resolve()} · status {summary.get('status', '?')}",
        [part for part in parts if part is not None],
    )


def label_sections(summary: dict[str, Any], paths: RunDir, root: Path) -> tuple[Any, Any]:
    """The "Per label" and "Largest errors" sections of a multi-label summary (a run's summary.json, or
    cnntrain-eval's eval_summary.json) with the pictures in `paths` (the run directory, or RUN_DIR/eval)."""
    per_label = summary.get("per_label") if isinstance(summary.get("per_label"), dict) else {}
    label_rows = sorted(
        (
            (
                name,
                fixed(get(m, "ap")),
                fixed(get(m, "f1")),
                fixed(get(m, "precision")),
                fixed(get(m, "recall")),
                get(m, "support"),
                fixed(get(m, "threshold")),
            )
            for name, m in per_label.items()
        ),
        key=lambda row: (row[1], row[0]),
    )
    labels = section(
        "per-label",
        "Per label",
        '<p class="note">test split, worst AP first</p><div class="row"><div>'
        + table(
            ["label", "AP", "F1", "precision", "recall", "test images", "threshold"],
            label_rows,
            numeric=(1, 2, 3, 4, 5, 6),
        )
        + "</div><div>"
        + figure(paths.per_class_png, root, "per-label AP and F1 (per_class.png)")
        + figure(paths.pr_curves_png, root, "precision-recall of the worst labels (pr_curves.png)")
        + "</div></div>",
    )
    worst = get(summary, "analysis", "worst_errors") or []
    worst_rows = [
        (
            get(w, "index"),
            ", ".join(get(w, "true") or []) or "(none)",
            ", ".join(f"{k} {v:.2f}" for k, v in (get(w, "predicted") or {}).items()) or "(none)",
            fixed(get(w, "loss")),
        )
        for w in worst
        if isinstance(w, dict)
    ]
    errors = section(
        "worst",
        "Largest errors",
        figure(
            paths.worst_mistakes_png,
            root,
            "test images with the largest errors, true and predicted sets (worst_mistakes.png)",
        )
        + (
            folded(
                f"{len(worst_rows)} images",
                table(["test image", "true", "predicted (p)", "loss"], worst_rows, numeric=(0, 3)),
                True,
            )
            if worst_rows
            else ""
        ),
    )
    return labels, errors
