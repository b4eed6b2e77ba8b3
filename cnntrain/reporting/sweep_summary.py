"""The table after a multirun: every job's overrides, final metrics, time and status, best first; then
sweep_summary.csv, the folds' table of a cross-validation sweep (sweep_folds.py), the picture (sweep_plot.py) and
the sweep's report.html (sweep_page.py).

Hydra's callback at the end of a multirun (cnntrain.commands.sweep_end) calls report_sweep once all jobs are done,
whatever the sweeper or launcher. Everything is read from the files each job left (sweep_rows.py).
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from cnntrain.config.names import TEST_BALANCED_ACC, TEST_MACRO_F1
from cnntrain.errors import UserError, first_line
from cnntrain.reporting.console import format_metric, output_console
from cnntrain.reporting.run_dir import SWEEP_FOLDS_CSV, SWEEP_SUMMARY_CSV, SWEEP_SUMMARY_PNG
from cnntrain.reporting.sweep_folds import folds_table, group_folds, write_folds_csv
from cnntrain.reporting.sweep_page import write_sweep_page
from cnntrain.reporting.sweep_plot import write_sweep_plot
from cnntrain.reporting.sweep_rows import JobRow, collect, write_csv
from cnntrain.reporting.text import markup


def report_sweep(sweep_dir: Path, plots: bool = True, html: bool = True) -> None:
    """Print the sweep's table and write sweep_summary.csv (and sweep_folds.csv when jobs differ only in
    dataset.fold); with `plots` draw sweep_summary.png, with `html` write the sweep's report.html."""
    if not sweep_dir.is_dir():
        return
    rows = collect(sweep_dir)
    write_csv(sweep_dir / SWEEP_SUMMARY_CSV, rows)
    failed = sum(row.status != "done" for row in rows)
    title = f"sweep: {len(rows) - failed} done, {failed} failed ({sweep_dir / SWEEP_SUMMARY_CSV})"
    console = output_console()
    if not console.is_terminal:
        console.width = 120  # pipes and CI logs do not wrap; the default 80 columns would crop the table
    console.print(jobs_table(rows, title))
    for row in rows:
        if row.status != "done":
            console.print(
                f"job {markup(row.job)} failed: {markup(row.values.get('error'))}", style="red", soft_wrap=True
            )
    groups = group_folds(rows)
    if groups:
        write_folds_csv(sweep_dir / SWEEP_FOLDS_CSV, groups)
        title = f"cross-validation: mean ± std over folds ({sweep_dir / SWEEP_FOLDS_CSV})"
        console.print(folds_table(groups, title))
    if plots:
        console.print(write_sweep_plot(rows, sweep_dir / SWEEP_SUMMARY_PNG, sweep_dir.name), soft_wrap=True)
    if html:  # after the PNG: the page inlines it
        try:
            console.print(f"wrote {markup(write_sweep_page(sweep_dir, rows))}", soft_wrap=True)
        except (UserError, OSError) as err:
            console.print(
                f"the sweep's report.html not written: {markup(first_line(err))}", style="yellow", soft_wrap=True
            )


def jobs_table(rows: list[JobRow], title: str) -> Table:
    """One line per job, best first; overrides shared by every job are left out (the CSV keeps them all)."""
    shared = set.intersection(*(set(row.overrides) for row in rows)) if len(rows) > 1 else set()
    monitor = next((row.values["monitor"] for row in rows if row.status == "done"), "best")
    table = Table(title=markup(title), title_justify="left")
    for name in (
        "job",
        "status",
        "overrides",
        f"best {monitor}",
        "test/acc",
        TEST_BALANCED_ACC,
        TEST_MACRO_F1,
        "test/loss",
        "time (s)",
    ):
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
            cells = [
                format_metric(monitor, v["best"]),
                format_metric("test/acc", v["test/acc"]),
                *(format_metric(name, v.get(name)) for name in (TEST_BALANCED_ACC, TEST_MACRO_F1)),
                format_metric("test/loss", v["test/loss"]),
            ]
        else:
            cells = ["-"] * 5
        seconds = v.get("elapsed_seconds")
        table.add_row(
            markup(row.job), markup(row.status), markup(varying), *cells, "-" if seconds is None else f"{seconds:.1f}"
        )
    return table
