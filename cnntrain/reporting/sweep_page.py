"""report.html of a sweep (its jobs, best first, linked to their own pages) and of cnntrain-compare.

Like a run's page (cnntrain.reporting.page), a view over files already written; torch is not imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from cnntrain.config.names import TEST_BALANCED_ACC, TEST_MACRO_F1
from cnntrain.reporting.html import Raw, esc, figure, inside, number, page, section, table, write_page
from cnntrain.reporting.page_sections import metric
from cnntrain.reporting.run_dir import SWEEP_REPORT_HTML, SWEEP_SUMMARY_PNG, RunDir
from cnntrain.reporting.sweep_rows import JobRow

# ---------------------------------------------------------------- the sweep page


def sweep_page(sweep_dir: Path, rows: list[JobRow], *, notebook: bool = False) -> str:
    """The sweep's table (as sweep_summary.csv), its picture, and a link to each job's page: relative to the
    sweep's own report.html, or with `notebook`, one that opens from a notebook (job_href)."""
    shared = set.intersection(*(set(row.overrides) for row in rows)) if len(rows) > 1 else set()
    monitor = next((row.values.get("monitor") for row in rows if row.status == "done"), "best")
    body_rows, failed = [], []
    for i, row in enumerate(rows):
        v = row.values
        job_page = sweep_dir / row.job / RunDir(Path()).report_html.name
        href = job_href(job_page) if notebook else f"{quote(row.job)}/{job_page.name}"
        target = ' target="_blank"' if notebook else ""  # a new tab: the notebook stays where it was
        link = (
            Raw(f'<a href="{esc(href)}"{target}>{esc(row.job)}</a>')
            if job_page.is_file() and inside(sweep_dir, job_page)
            else row.job
        )
        seconds = number(v.get("elapsed_seconds"))
        body_rows.append(
            (
                link,
                row.status,
                " ".join(o for o in row.overrides if o not in shared),
                metric(str(monitor), v.get("best")),
                v.get("best_epoch") or "-",
                metric("test/acc", v.get("test/acc")),
                metric(TEST_BALANCED_ACC, v.get(TEST_BALANCED_ACC)),
                metric(TEST_MACRO_F1, v.get(TEST_MACRO_F1)),
                metric("test/loss", v.get("test/loss")),
                "-" if seconds is None else f"{seconds:.1f}",
                v.get("error") or "",
            )
        )
        if row.status != "done":
            failed.append(i)
    done = len(rows) - len(failed)
    table_html = table(
        [
            "job",
            "status",
            "overrides",
            f"best {monitor}",
            "epoch",
            "test/acc",
            "balanced acc",
            "macro-F1",
            "test/loss",
            "time (s)",
            "error",
        ],
        body_rows,
        numeric=(3, 4, 5, 6, 7, 8, 9),
        bad=failed,
    )
    shared_note = f'<p class="note">every job: {esc(" ".join(sorted(shared)))}</p>' if shared else ""
    parts = [
        section(
            "jobs",
            "Jobs",
            '<p class="note">best first; a job name links to its own page</p>' + shared_note + table_html,
        )
    ]
    picture = figure(
        sweep_dir / SWEEP_SUMMARY_PNG, sweep_dir, f"best {monitor} against each swept key ({SWEEP_SUMMARY_PNG})"
    )
    if picture:
        parts.append(section("picture", "Picture", picture))
    return page(f"sweep {sweep_dir.name}", f"{sweep_dir.resolve()} · {done} done, {len(failed)} failed", parts)


def job_href(job_page: Path) -> str:
    """A job page's link from a notebook cell: relative to the kernel's folder (the notebook's, which Jupyter
    serves and resolves relative links against) when the page lies below it, else an absolute file:// URI (which
    a notebook opened from disk, VS Code's for one, follows)."""
    page_path, here = job_page.resolve(), Path.cwd().resolve()
    if page_path.is_relative_to(here):
        return quote(page_path.relative_to(here).as_posix())
    return page_path.as_uri()


def sweep_fragment(sweep_dir: Path, rows: list[JobRow]) -> str:
    """The sweep page's sections without the page around them, for a notebook cell (Sweep._repr_html_): its links
    open from the notebook, not from the sweep folder."""
    if not rows:
        return f"<p>sweep {esc(str(sweep_dir))}: no job yet</p>"
    text = sweep_page(sweep_dir, rows, notebook=True)
    return "<div>" + text[text.index("<section") : text.rindex("</section>") + len("</section>")] + "</div>"


def write_sweep_page(sweep_dir: Path, rows: list[JobRow]) -> Path:
    return write_page(sweep_dir, sweep_dir / SWEEP_REPORT_HTML, sweep_page(sweep_dir, rows))


# ---------------------------------------------------------------- the compare page


def compare_page(
    out: Path, headers: list[str], rows: list[list[str]], run_paths: list[Path], png: Path, notes: list[str]
) -> str:
    """cnntrain-compare's table (its first column linked to each run's page, relative to `out`) and picture."""
    linked = []
    for row, run in zip(rows, run_paths):
        run_page_path = RunDir(run).report_html
        if run_page_path.is_file() and inside(run, run_page_path):
            href = Path(os.path.relpath(run_page_path.resolve(), out.resolve().parent)).as_posix()
            row = [Raw(f'<a href="{esc(quote(href))}">{esc(row[0])}</a>'), *row[1:]]
        linked.append(row)
    body = table(headers, linked, numeric=range(2, 7)) + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    parts = [
        section("runs", "Runs", body),
        section("curves", "Curves", figure(png, None, f"learning curves ({png.name})", f"{png} not written")),
    ]
    return page(f"{len(rows)} run{'s' if len(rows) != 1 else ''} compared", str(out.resolve().parent), parts)
