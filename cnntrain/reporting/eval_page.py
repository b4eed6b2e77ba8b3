"""cnntrain-eval's page, RUN_DIR/eval/report.html: what the evaluation measured (checkpoint, data, test metrics)
and its analysis, drawn by the same sections as a run's page (page.analysis_sections) over eval_summary.json and
the pictures in RUN_DIR/eval/. Like the run's page, a view over files already written; torch is not imported.
"""

from __future__ import annotations

from pathlib import Path

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.errors import UserError
from cnntrain.reporting.html import page, section, table, write_page
from cnntrain.reporting.label_page import label_sections
from cnntrain.reporting.page import analysis_sections
from cnntrain.reporting.page_sections import fixed, get
from cnntrain.reporting.run_dir import RunDir, read_summary


def eval_page(run_dir: Path) -> str:
    summary = read_summary(RunDir(run_dir).eval_summary_json)
    out = RunDir(RunDir(run_dir).eval_dir)
    test = get(summary, "test") or {}
    facts = [
        ("checkpoint", str(get(summary, "checkpoint"))),
        ("epoch", str(get(summary, "epoch"))),
        ("dataset", str(get(summary, "dataset"))),
        ("test images", str(get(test, "images"))),
    ]
    metrics = [(key, fixed(value)) for key, value in test.items() if key != "images" and not isinstance(value, dict)]
    parts = [section("results", "Result", table(["test metric", "value"], metrics, numeric=(1,)) + table(None, facts))]
    if summary.get("task") == TASK_MULTILABEL:  # as a multi-label run's page: each label's scores, the largest errors
        parts.extend(label_sections(summary, out, out.root))
    else:
        parts.extend(analysis_sections(out, summary))
    title = f"evaluation of {Path(run_dir).resolve()}"
    return page(title, f"{get(summary, 'dataset')} · checkpoint epoch {get(summary, 'epoch')}", parts)


def write_eval_page(run_dir: Path) -> Path | None:
    """Write RUN_DIR/eval/report.html from eval_summary.json; None when the page cannot be written."""
    out = RunDir(RunDir(run_dir).eval_dir)
    try:
        return write_page(out.root, out.report_html, eval_page(run_dir))
    except (UserError, OSError):
        return None
