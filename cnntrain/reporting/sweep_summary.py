"""The table after a multirun: every job's overrides, final metrics, time and status, best first.

Hydra calls SweepSummary.on_multirun_end (registered under hydra.callbacks in train.yaml) once
all jobs are done, whatever the sweeper or launcher. It reads only the files each job left in its
directory (.hydra/overrides.yaml and summary.json), so jobs run elsewhere (joblib, SLURM) count too,
and a job that left no summary.json (killed) is listed as failed. Jobs that differ only in dataset.fold
are also summarised per configuration over their folds (cnntrain.reporting.sweep_folds).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cnntrain.config.names import CLASS_METRICS, LABEL_METRICS, TEST_BALANCED_ACC, TEST_MACRO_F1, summary_key
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import UserError, first_line
from cnntrain.files import write_text
from cnntrain.reporting.console import format_metric
from cnntrain.reporting.run_dir import SWEEP_FOLDS_CSV, SWEEP_SUMMARY_CSV, SWEEP_SUMMARY_PNG, RunDir, read_summary
from cnntrain.reporting.sweep_folds import folds_table, group_folds, write_folds_csv
from cnntrain.reporting.text import markup

TEST_COLUMNS = tuple(dict.fromkeys((*CLASS_METRICS, *LABEL_METRICS)))
"""The test metrics a sweep's CSV has a column for: single-label runs fill the first, multi-label runs the others."""
CSV_FIELDS = ("job", "status", "overrides", "monitor", "best", "best_epoch", "val/loss", "val/acc", "test/loss",
              "test/acc", *TEST_COLUMNS, "elapsed_seconds", "error")


@dataclass
class JobRow:
    job: str
    status: str
    overrides: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    mode: str = "max"

    def sort_key(self) -> tuple[int, float, str]:
        best = self.values.get("best")
        if self.status != "done" or best is None or not math.isfinite(best):
            return (1, 0.0, _job_order(self.job))
        return (0, -best if self.mode == "max" else best, _job_order(self.job))


def _job_order(job: str) -> str:
    return job.zfill(12) if job.isdigit() else job


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
        return JobRow(job_dir.name, "failed", overrides,
                      {"error": summary.get("error", "?"), "elapsed_seconds": summary.get("elapsed_seconds")})
    final = summary.get("final_epoch") or {}
    best = summary["best"]
    values = {"monitor": best["monitor"], "best": best["value"], "best_epoch": best["epoch"],
              "val/loss": final.get("val/loss"), "val/acc": final.get("val/acc"),
              "test/loss": summary["test"]["loss"], "test/acc": summary["test"]["acc"],
              **{name: summary["test"].get(summary_key(name)) for name in TEST_COLUMNS},
              "elapsed_seconds": summary.get("elapsed_seconds"), "error": ""}
    return JobRow(job_dir.name, "done", overrides, values, best.get("mode", "max"))


def collect(sweep_dir: Path) -> list[JobRow]:
    """Every job directory of a sweep, sorted by the monitored metric (best first), failed jobs last."""
    jobs = [read_job(d) for d in sweep_dir.iterdir() if RunDir(d).overrides_yaml.is_file()]
    return sorted(jobs, key=JobRow.sort_key)


def write_csv(path: Path, rows: list[JobRow]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        cells = {"job": row.job, "status": row.status, "overrides": " ".join(row.overrides), **row.values}
        writer.writerow(["" if cells.get(name) is None else cells.get(name, "") for name in CSV_FIELDS])
    write_text(path, buffer.getvalue())


def summary_table(rows: list[JobRow], title: str) -> Table:
    """Overrides shared by every job are left out of the table (the CSV keeps them all)."""
    shared = set.intersection(*(set(row.overrides) for row in rows)) if len(rows) > 1 else set()
    monitor = next((row.values["monitor"] for row in rows if row.status == "done"), "best")
    table = Table(title=markup(title), title_justify="left")
    for name in ("job", "status", "overrides", f"best {monitor}", "test/acc", TEST_BALANCED_ACC, TEST_MACRO_F1,
                 "test/loss", "time (s)"):
        if name == "overrides":
            table.add_column(name, overflow="fold", min_width=16)
        elif name in (TEST_BALANCED_ACC, TEST_MACRO_F1):
            table.add_column(name.replace("/", "/\n", 1), justify="right")  # on two lines: room for the overrides
        else:
            table.add_column(name, justify="left" if name == "status" else "right")
    for row in rows:
        v = row.values
        varying = " ".join(o for o in row.overrides if o not in shared)
        if row.status == "done":
            cells = [format_metric(monitor, v["best"]), format_metric("test/acc", v["test/acc"]),
                     *(format_metric(name, v.get(name)) for name in (TEST_BALANCED_ACC, TEST_MACRO_F1)),
                     format_metric("test/loss", v["test/loss"])]
        else:
            cells = ["-"] * 5
        seconds = v.get("elapsed_seconds")
        table.add_row(markup(row.job), markup(row.status), markup(varying), *cells,
                      "-" if seconds is None else f"{seconds:.1f}")
    return table


class SweepSummary(Callback):
    """Hydra callback: after a multirun, print the summary table, write sweep_summary.csv, its picture and the
    sweep's report.html."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir)
        write_csv(sweep_dir / SWEEP_SUMMARY_CSV, rows)
        failed = sum(row.status != "done" for row in rows)
        title = f"sweep: {len(rows) - failed} done, {failed} failed ({sweep_dir / SWEEP_SUMMARY_CSV})"
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = 120  # pipes and CI logs do not wrap; the default 80 columns would crop the table
        console.print(summary_table(rows, title))
        for row in rows:
            if row.status != "done":
                console.print(f"job {markup(row.job)} failed: {markup(row.values.get('error'))}", style="red",
                              soft_wrap=True)
        groups = group_folds(rows)
        if groups:
            write_folds_csv(sweep_dir / SWEEP_FOLDS_CSV, groups)
            title = f"cross-validation: mean ± std over folds ({sweep_dir / SWEEP_FOLDS_CSV})"
            console.print(folds_table(groups, title))
        if OmegaConf.select(config, "report.plots", default=True):  # report.plots=false: no PNG, no matplotlib
            from cnntrain.reporting.sweep_plot import write_sweep_plot

            console.print(write_sweep_plot(rows, sweep_dir / SWEEP_SUMMARY_PNG, sweep_dir.name), soft_wrap=True)
        if OmegaConf.select(config, "report.html", default=True):  # after the PNG: the page inlines it
            from cnntrain.reporting.sweep_page import write_sweep_page

            try:
                console.print(f"wrote {markup(write_sweep_page(sweep_dir, rows))}", soft_wrap=True)
            except (UserError, OSError) as err:
                console.print(f"the sweep's report.html not written: {markup(first_line(err))}", style="yellow",
                              soft_wrap=True)
