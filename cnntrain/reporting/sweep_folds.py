"""Cross-validation in a sweep: jobs whose overrides differ only in dataset.fold are one configuration,
reported as the mean and standard deviation over its folds (sweep_folds.csv and a table).

`cnntrain -m dataset.folds=5 dataset.fold=0,1,2,3,4 optimizer.lr=1e-3,3e-4` gives two configurations of
five folds each. The spread is the sample standard deviation (n - 1) over the folds that finished; failed
folds are counted, not averaged.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from cnntrain.config.names import TEST_BALANCED_ACC
from cnntrain.files import write_text
from cnntrain.reporting.console import format_metric
from cnntrain.reporting.sweep_rows import JobRow, job_order
from cnntrain.reporting.text import markup

FOLD_KEY = "dataset.fold"
AVERAGED = ("best", "test/acc", TEST_BALANCED_ACC)
"""What is averaged over the folds: the monitored metric's best value, and the test accuracies."""
FOLD_FIELDS = (
    "overrides",
    "folds_done",
    "folds_failed",
    "monitor",
    *(f"{name}_{stat}" for name in AVERAGED for stat in ("mean", "std")),
    "jobs",
)


@dataclass
class FoldGroup:
    """One configuration: its overrides without dataset.fold, and the jobs of its folds."""

    overrides: list[str]
    jobs: list[JobRow] = field(default_factory=list)

    @property
    def done(self) -> list[JobRow]:
        return [job for job in self.jobs if job.status == "done"]

    def stats(self, name: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation of `name` over the finished folds (std: None with one fold)."""
        values = [job.values[name] for job in self.done if job.values.get(name) is not None]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def sort_key(self) -> tuple[int, float]:
        mean, _ = self.stats("best")
        mode = self.done[0].mode if self.done else "max"
        return (1, 0.0) if mean is None else (0, -mean if mode == "max" else mean)


def group_folds(rows: list[JobRow]) -> list[FoldGroup]:
    """The configurations of the jobs that set dataset.fold, best mean monitored value first (none: no CV)."""
    groups: dict[tuple[str, ...], FoldGroup] = {}
    for row in rows:
        if not any(_key(o) == FOLD_KEY for o in row.overrides):
            continue
        rest = [o for o in row.overrides if _key(o) != FOLD_KEY]
        groups.setdefault(tuple(rest), FoldGroup(rest)).jobs.append(row)
    return sorted(groups.values(), key=FoldGroup.sort_key)


def write_folds_csv(path: Path, groups: list[FoldGroup]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(FOLD_FIELDS)
    for group in groups:
        cells = {
            "overrides": " ".join(group.overrides),
            "folds_done": len(group.done),
            "folds_failed": len(group.jobs) - len(group.done),
            "monitor": _monitor([group]),
            "jobs": " ".join(sorted((job.job for job in group.jobs), key=job_order)),
        }
        for name in AVERAGED:
            cells[f"{name}_mean"], cells[f"{name}_std"] = group.stats(name)
        writer.writerow(["" if cells[name] is None else cells[name] for name in FOLD_FIELDS])
    write_text(path, buffer.getvalue())


def folds_table(groups: list[FoldGroup], title: str) -> Table:
    """One row per configuration; overrides every configuration shares are left out, as in the sweep table."""
    shared = set.intersection(*(set(g.overrides) for g in groups)) if len(groups) > 1 else set()
    monitor = _monitor(groups)
    table = Table(title=markup(title), title_justify="left")
    table.add_column("configuration", overflow="fold", min_width=16)
    table.add_column("folds", justify="right")
    for name in (f"best {monitor}", "test/acc", TEST_BALANCED_ACC):
        table.add_column(name, justify="right")
    for group in groups:
        failed = len(group.jobs) - len(group.done)
        folds = f"{len(group.done)}" + (f" (+{failed} failed)" if failed else "")
        cells = [_mean_std(metric, *group.stats(name)) for name, metric in zip(AVERAGED, (monitor, *AVERAGED[1:]))]
        table.add_row(markup(" ".join(o for o in group.overrides if o not in shared) or "(all)"), folds, *cells)
    return table


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _monitor(groups: list[FoldGroup]) -> str:
    return next((job.values["monitor"] for g in groups for job in g.done), "best")


def _mean_std(metric: str, mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return format_metric(metric, mean) + ("" if std is None else f" ± {format_metric(metric, std)}")
