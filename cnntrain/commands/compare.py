"""`cnntrain-compare RUN_DIR...`: several runs side by side, to see which setting did better and how.

Each argument is a run directory or a sweep directory (standing for its jobs, in job order). The learning
curves from every run's metrics.csv, with its per-step training loss from steps.csv, are overlaid in one PNG
(compare.png here by default), and a table gives their final metrics from summary.json with the config keys
that differ between them (from .hydra/config.yaml; keys that only follow a differing group choice, such as
model.layers when model.name differs, are named under the table rather than given a column). With --html PAGE
the same table and picture go into one self-contained page, linked to each run's report.html.
Nothing is trained and torch is not imported: it reads files only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.flat import flatten
from cnntrain.config.names import EPOCH_METRICS, STEP_LOSS
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import UserError, first_line
from cnntrain.files import kind_of
from cnntrain.reporting.compare_plot import Curves, plot_compare
from cnntrain.reporting.console import format_metric, output_console
from cnntrain.reporting.html import write_page
from cnntrain.reporting.run_dir import RunDir, read_metrics, read_steps, read_summary
from cnntrain.reporting.sweep_page import compare_page
from cnntrain.reporting.sweep_rows import job_order
from cnntrain.reporting.text import markup, plain

DEFAULT_OUT = Path("compare.png")
MAX_KEY_COLUMNS = 4  # more differing keys than this share one "differs" column
MAX_VALUE_CHARS = 28  # a config value longer than this (a layer list) is cut in the table and the legend


@dataclass
class Run:
    """What cnntrain-compare reads from one run directory."""

    path: Path
    name: str
    status: str
    epochs: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any]

    def number(self, dotted: str) -> float | None:
        """A number from summary.json (None when absent); a value of another type is the file's damage."""
        value: Any = self.summary
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        raise UserError(
            f"{RunDir(self.path).summary_json}: '{dotted}' is {kind_of(value)}, not a number; restore "
            f"the file from a copy of the run"
        )


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-compare",
        description="Overlay the learning curves of runs in one PNG and list how the runs differ.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories written by cnntrain, or sweep directories (each of their jobs)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write (default: compare.png here)")
    p.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="PAGE",
        help="also write a self-contained page (.html): the table, the picture, links to each run's page",
    )
    return p


def find_runs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run directories the arguments name, each once, in order (a sweep's jobs in job order), and a note for
    each sweep job left out because it stopped before its first epoch."""
    found: list[Path] = []
    notes: list[str] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"run directory not found: {path}")
        if not path.is_dir():
            raise UserError(f"{path} is a file; give a run directory or a sweep directory")
        if _is_run(path):
            if not RunDir(path).metrics_csv.is_file():
                raise UserError(
                    f"{path} has no metrics.csv, so no curve to draw: the run stopped before its first "
                    f"epoch ended; leave it out"
                )
            found.append(path)
            continue
        jobs = sorted((d for d in path.iterdir() if d.is_dir() and _is_run(d)), key=lambda d: job_order(d.name))
        if not jobs:
            raise UserError(
                f"{path} is not a cnntrain run or sweep directory (no .hydra/config.yaml in it or in its "
                f"sub-directories)"
            )
        for job in jobs:
            if RunDir(job).metrics_csv.is_file():
                found.append(job)
            else:
                notes.append(f"left out {job}: no metrics.csv (the job stopped before its first epoch ended)")
        if not any(RunDir(job).metrics_csv.is_file() for job in jobs):
            raise UserError(f"no run to compare in {path}: none of its {len(jobs)} jobs finished an epoch")
    unique: dict[Path, Path] = {}
    for run in found:
        unique.setdefault(run.resolve(), run)  # a run named twice (itself and in its sweep) is compared once
    return list(unique.values()), notes


def read_run(path: Path, name: str) -> Run:
    """One run's epochs (numbers), summary.json ({} while the run has none) and flattened config."""
    paths = RunDir(path)
    config = read_saved_yaml(paths.config_yaml)  # bounded, never resolved: a run may come from anyone
    if not isinstance(config, dict):
        raise UserError(
            f"{paths.config_yaml} holds {kind_of(config)}, not the mapping of the run's config; restore "
            f"it from a copy of the run"
        )
    summary = read_summary(paths.summary_json)
    status = str(summary.get("status", "?")) if paths.summary_json.is_file() else "unfinished"
    return Run(path, name, status, _epochs(paths.metrics_csv), summary, flatten(config))


def differing_keys(configs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(keys to show, keys implied by a shown one): the flattened keys whose value is not the same in every run.
    A key under a group whose `name` differs (model.layers when model.name does) is implied by that choice."""
    missing = object()
    keys = list(dict.fromkeys(key for config in configs for key in config))
    differ = [key for key in keys if len({repr(c.get(key, missing)) for c in configs}) > 1]
    named = {key[: -len("name")] for key in differ if key.endswith(".name")}
    implied = [key for key in differ if not key.endswith(".name") and any(key.startswith(g) for g in named)]
    return [key for key in differ if key not in implied], implied


def differs_line(shown: list[str], implied: list[str]) -> str:
    """'config keys that differ: model.name, optimizer.lr; with model.name also model.layers, ...'."""
    line = f"config keys that differ: {', '.join(shown) if shown else 'none'}"
    for key in (key for key in shown if key.endswith(".name")):
        following = [k for k in implied if k.startswith(key[: -len("name")])]
        if following:
            line += f"; with {key} also {', '.join(following)}"
    return line


def short_names(paths: list[Path]) -> list[str]:
    """Each run's shortest path tail that no other run shares: a sweep's job numbers, a run folder's time, and
    one more folder up where two would read the same (two sweeps' job 0: sweep-a/0, sweep-b/0)."""
    parts = [p.resolve().parts for p in paths]
    depth = [1] * len(parts)
    while True:
        names = [str(Path(*run[-d:])) for run, d in zip(parts, depth)]
        clashes = {name for name in names if names.count(name) > 1}
        grow = [i for i, name in enumerate(names) if name in clashes and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def labels(runs: list[Run], keys: list[str]) -> list[str]:
    """Legend labels: the run's short name and its values of the differing keys."""
    shorts = [key[: -len(".name")] if key.endswith(".name") else key.rsplit(".", 1)[-1] for key in keys]
    if len(set(shorts)) < len(shorts):
        shorts = keys
    return [
        run.name + (": " + ", ".join(f"{s}={show(run.config.get(k))}" for s, k in zip(shorts, keys)) if keys else "")
        for run in runs
    ]


def compare_rows(runs: list[Run], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the comparison: final metrics of each run (test with the best weights, the best
    monitored value and its epoch, epochs run, training seconds) and its values of the keys that differ."""
    monitors = {run.summary.get("best", {}).get("monitor") for run in runs if isinstance(run.summary.get("best"), dict)}
    monitors.discard(None)
    one_monitor = len(monitors) == 1
    best_header = f"best {next(iter(monitors))} (epoch)" if one_monitor else "best monitored (epoch)"
    per_key = len(keys) <= MAX_KEY_COLUMNS
    with_map = any(run.number("test.map") is not None for run in runs)  # multi-label runs: their mAP too
    headers = [
        "run",
        "status",
        "test/acc",
        *(["test/map"] if with_map else []),
        "test/loss",
        best_header,
        "epochs",
        "train s",
        *(keys if per_key else ["differs"]),
    ]
    rows = []
    for run in runs:
        monitor = run.summary.get("best", {}).get("monitor") if isinstance(run.summary.get("best"), dict) else None
        best = run.number("best.value")
        best_cell = format_metric(str(monitor or ""), best)
        if not one_monitor and best is not None:
            best_cell = f"{monitor} {best_cell}"
        epoch, epochs_run = run.number("best.epoch"), run.number("epochs_run")
        if epoch is not None:
            best_cell += f" ({int(epoch)})"
        seconds = run.number("timing.train_seconds")
        seconds = run.number("train_seconds") if seconds is None else seconds
        cells = [
            format_metric("test/acc", run.number("test.acc")),
            *([format_metric("test/map", run.number("test.map"))] if with_map else []),
            format_metric("test/loss", run.number("test.loss")),
            best_cell,
            str(int(epochs_run)) if epochs_run is not None else str(len(run.epochs)),
            "-" if seconds is None else f"{seconds:.1f}",
        ]
        if per_key:
            cells += [show(run.config.get(key)) for key in keys]
        else:
            cells.append(", ".join(f"{key}={show(run.config.get(key))}" for key in keys))
        rows.append([run.name, run.status, *cells])
    return headers, rows


def compare_table(runs: list[Run], keys: list[str]) -> Table:
    """compare_rows as the table the console prints."""
    headers, rows = compare_rows(runs, keys)
    table = Table(title=f"{len(runs)} run{'s' if len(runs) != 1 else ''} compared", title_justify="left")
    table.add_column(headers[0], overflow="fold")
    table.add_column(headers[1], no_wrap=True)
    for name in headers[2:7]:
        table.add_column(name, justify="right", no_wrap=True)
    for name in headers[7:]:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(markup(cell) for cell in row))
    return table


def show(value: Any) -> str:
    """A config value as the YAML file spells it (as text: control characters escaped), cut short when long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = plain(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    out: Path = args.out
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: the picture is a PNG; give a file name ending in .png")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name ending in .png")
    page: Path | None = args.html
    if page is not None and page.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--html {page}: the page is HTML; give a file name ending in .html")
    if page is not None and page.is_dir():
        raise UserError(f"--html {page} is a directory; give a file name ending in .html")
    paths, notes = find_runs(args.runs)
    runs = [read_run(path, name) for path, name in zip(paths, short_names(paths))]
    shown, implied = differing_keys([run.config for run in runs])
    console = output_console()
    if not console.is_terminal:
        console.width = 120  # pipes and CI logs do not wrap; the default 80 columns would crop the table
    for note in notes:
        console.print(markup(note), soft_wrap=True)
    console.print(compare_table(runs, shown))
    if len(runs) > 1:
        console.print(markup(differs_line(shown, implied)), soft_wrap=True)
    curves = [
        Curves(
            label,
            tuple(row["epoch"] for row in run.epochs),
            {metric: tuple(row[metric] for row in run.epochs) for metric in EPOCH_METRICS},
            tuple((row["epoch"], row[STEP_LOSS]) for row in read_steps(RunDir(run.path).steps_csv)),
        )
        for run, label in zip(runs, labels(runs, shown))
    ]
    common = os.path.commonpath([p.resolve() for p in paths]) if len(paths) > 1 else str(paths[0].resolve())
    try:
        plot_compare(curves, out, f"learning curves of {len(runs)} run{'s' if len(runs) != 1 else ''} ({common})")
    except OSError as err:
        raise UserError(f"cannot write {out}: {first_line(err)}") from None
    console.print(f"wrote {markup(out.resolve())}", soft_wrap=True)
    if page is not None:
        headers, rows = compare_rows(runs, shown)
        extra = [differs_line(shown, implied)] if len(runs) > 1 else []
        text = compare_page(page, headers, rows, paths, out, [*notes, *extra])
        try:
            write_page(page.resolve().parent, page, text)
        except OSError as err:
            raise UserError(f"cannot write {page}: {first_line(err)}") from None
        console.print(f"wrote {markup(page.resolve())}", soft_wrap=True)


def _epochs(path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows as numbers (None for an empty cell); a cell that is not a number is the file's damage."""
    rows = []
    for number, row in enumerate(read_metrics(path), 1):
        values: dict[str, Any] = {}
        for key in ("epoch", *EPOCH_METRICS):
            cell = row[key].strip()
            try:
                values[key] = float(cell) if cell else None
            except ValueError:
                raise UserError(
                    f"{path} row {number}: {key} is '{cell}', not a number; restore the file from a copy of the run"
                ) from None
        if values["epoch"] is None or not math.isfinite(values["epoch"]):
            raise UserError(f"{path} row {number}: no epoch number; restore the file from a copy of the run")
        values["epoch"] = int(values["epoch"])
        rows.append(values)
    return rows


def _is_run(path: Path) -> bool:
    return RunDir(path).config_yaml.is_file()


def main() -> None:
    """Console-script entry point of cnntrain-compare."""
    run_command(_main)


if __name__ == "__main__":
    main()
