"""A sweep's jobs as rows: what each job left in its directory (.hydra/overrides.yaml and summary.json), read
back into one JobRow, in the one job order every view of a sweep uses, and sweep_summary.csv written from them.

Only the files count, so jobs run elsewhere (joblib, SLURM, Ray) are rows too, and a job that left no
summary.json (killed) is a failed row. The table after a multirun (sweep_summary.py), the folds (sweep_folds.py),
the picture (sweep_plot.py), the page (sweep_page.py), cnntrain-compare and the Python API's Sweep read these.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntrain.config.names import CLASS_METRICS, LABEL_METRICS, summary_key
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import UserError
from cnntrain.files import write_text
from cnntrain.reporting.run_dir import RunDir, read_summary

TEST_COLUMNS = tuple(dict.fromkeys((*CLASS_METRICS, *LABEL_METRICS)))
"""The test metrics a sweep's CSV has a column for: single-label runs fill the first, multi-label runs the others."""
CSV_FIELDS = (
    "job",
    "status",
    "overrides",
    "monitor",
    "best",
    "best_epoch",
    "val/loss",
    "val/acc",
    "test/loss",
    "test/acc",
    *TEST_COLUMNS,
    "elapsed_seconds",
    "error",
)


@dataclass
class JobRow:
    """One job of a sweep: its directory's name, done or failed, its overrides, and its row's values (CSV_FIELDS
    by name; a failed job has its error); `mode` says whether the monitored metric is better high or low."""

    job: str
    status: str
    overrides: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    mode: str = "max"

    def sort_key(self) -> tuple[int, float, str]:
        """Best monitored value first, failed jobs (and jobs without a finite value) last, ties in job order."""
        best = self.values.get("best")
        if self.status != "done" or best is None or not math.isfinite(best):
            return (1, 0.0, job_order(self.job))
        return (0, -best if self.mode == "max" else best, job_order(self.job))


def job_order(name: str) -> str:
    """The sort key of a job directory's name: Hydra's numbered jobs in number order (2 before 10)."""
    return name.zfill(12) if name.isdigit() else name


def read_job(job_dir: Path) -> JobRow:
    """One job's row, from the files it left in its directory."""
    paths = RunDir(job_dir)
    try:
        overrides = [str(o) for o in read_saved_yaml(paths.overrides_yaml) or []]
    except UserError as err:
        return JobRow(job_dir.name, "failed", [], {"error": str(err)})
    path = paths.summary_json
    if not path.is_file():
        return JobRow(job_dir.name, "failed", overrides, {"error": "no summary.json: the job was killed or crashed"})
    try:
        summary = read_summary(path)
    except UserError as err:
        return JobRow(job_dir.name, "failed", overrides, {"error": str(err)})
    if summary.get("status") != "done":
        return JobRow(
            job_dir.name,
            "failed",
            overrides,
            {"error": summary.get("error", "?"), "elapsed_seconds": summary.get("elapsed_seconds")},
        )
    final = summary.get("final_epoch") or {}
    best = summary["best"]
    values = {
        "monitor": best["monitor"],
        "best": best["value"],
        "best_epoch": best["epoch"],
        "val/loss": final.get("val/loss"),
        "val/acc": final.get("val/acc"),
        "test/loss": summary["test"]["loss"],
        "test/acc": summary["test"]["acc"],
        **{name: summary["test"].get(summary_key(name)) for name in TEST_COLUMNS},
        "elapsed_seconds": summary.get("elapsed_seconds"),
        "error": "",
    }
    return JobRow(job_dir.name, "done", overrides, values, best.get("mode", "max"))


def collect(sweep_dir: Path) -> list[JobRow]:
    """Every job directory of a sweep, sorted by the monitored metric (best first), failed jobs last."""
    jobs = [read_job(d) for d in sweep_dir.iterdir() if RunDir(d).overrides_yaml.is_file()]
    return sorted(jobs, key=JobRow.sort_key)


def write_csv(path: Path, rows: list[JobRow]) -> None:
    """sweep_summary.csv: one line per job, CSV_FIELDS as columns, an empty cell where a value is missing."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        cells = {"job": row.job, "status": row.status, "overrides": " ".join(row.overrides), **row.values}
        writer.writerow(["" if cells.get(name) is None else cells.get(name, "") for name in CSV_FIELDS])
    write_text(path, buffer.getvalue())
