"""`cnntrain-reproduce RUN_DIR`: run a finished run again from its directory alone, then compare.

The re-run is the same `cnntrain` command (the task overrides Hydra saved in RUN_DIR/.hydra/overrides.yaml)
into a new directory. A run directory may come from someone else, so it is read as data: only overrides of
cnntrain's own config are replayed, each checked against today's schema and config groups, with no
interpolation that calls a resolver; hydra settings (callbacks, output folders, environment), trackers and
anything that is not a KEY=VALUE override are not replayed. First what decides the floats is compared
(cnntrain version and commit, library versions, device, the CPU's instruction set, threads; see
cnntrain.reporting.provenance): where it is the same, the final metrics must be bit-identical and are
compared exactly; where it differs, the differences are named, float results may differ, and each float is
compared within a stated tolerance (--rtol, --atol; --exact insists on equality). Counts compare exactly.
Exit status: 0 equal (or --no-compare), 1 some metric differs, 2 a user mistake, else the re-run's own.

Hydra and the run are imported inside the functions that use them, so `--help` and a bad argument
answer without them.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, run_command
from cnntrain.commands.replayed import check_dataset_path, replayed_overrides
from cnntrain.commands.replayed import saved_command as saved_command  # the name callers know it by here
from cnntrain.config.names import TASK_MULTILABEL, epoch_columns
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import ConfigError, UserError
from cnntrain.files import kind_of
from cnntrain.reporting.console import output_console
from cnntrain.reporting.float_facts import environment_changes
from cnntrain.reporting.run_dir import RunDir, read_metrics, read_summary
from cnntrain.reporting.text import markup

SUMMARY_METRICS = (
    "test.acc",
    "test.loss",
    "test_last.acc",
    "test_last.loss",
    "best.value",
    "best.epoch",
    "epochs_run",
    "stopped_early",
)
LABEL_SUMMARY_METRICS = ("test.map", "test_last.map", "test.micro_f1", "test.hamming_loss")
"""Compared too when the runs are multi-label (and val/map per epoch)."""
RTOL, ATOL = 0.02, 0.005  # another CPU family: the MNIST loss moved 1.0% relative, accuracy 0.07 points


@dataclass(frozen=True)
class Tolerance:
    """How close two floats must be: exact (both 0) on the original's environment, else within rtol/atol."""

    rtol: float = 0.0
    atol: float = 0.0

    @property
    def exact(self) -> bool:
        return self.rtol == 0.0 and self.atol == 0.0

    def __str__(self) -> str:
        return "exactly" if self.exact else f"within rel {self.rtol:g} or abs {self.atol:g}"


EXACT = Tolerance()


@dataclass
class Comparison:
    name: str
    original: Any
    rerun: Any
    tolerance: Tolerance = EXACT

    @property
    def identical(self) -> bool:
        return self.original == self.rerun

    @property
    def equal(self) -> bool:
        """Identical, or (for floats under a tolerance) close enough; counts and flags always compare exactly."""
        if self.identical or self.tolerance.exact:
            return self.identical
        a, b = _float(self.original), _float(self.rerun)
        return (
            a is not None
            and b is not None
            and math.isclose(a, b, rel_tol=self.tolerance.rtol, abs_tol=self.tolerance.atol)
        )


def _float(value: Any) -> float | None:
    """A float value as a float (metrics.csv holds text); None for counts, flags and anything else."""
    if isinstance(value, bool) or isinstance(value, int):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if isinstance(value, str) and number.is_integer() and "." not in value else number


def compose_saved(overrides: list[str]) -> Any:
    """Today's config for the replayed overrides, as Hydra will compose it (and save it in the re-run's
    .hydra/config.yaml); checked against the schema first, so unknown keys and bad values are refused here."""
    from cnntrain.config.compose import compose_train
    from cnntrain.config.validate import validate

    cfg = compose_train(overrides)
    validate(cfg)
    return cfg


def _compose_saved_or_say_where(run_dir: Path, overrides: list[str]) -> Any:
    try:
        return compose_saved(overrides)
    except ConfigError as err:
        raise ConfigError(
            f"the overrides saved in {RunDir(run_dir).overrides_yaml} do not compose today ({err}); "
            f"edit them to today's config names"
        ) from None


def config_changes(run_dir: Path, cfg: Any) -> list[str]:
    """Keys whose composed value today differs from the run's saved .hydra/config.yaml."""
    from omegaconf import OmegaConf

    now = OmegaConf.to_container(cfg, resolve=False)
    now.pop("hydra", None)
    path = RunDir(run_dir).config_yaml
    then = read_saved_yaml(path)
    if not isinstance(then, dict):
        raise UserError(
            f"{path} holds {kind_of(then)}, not the mapping of the run's config; restore it from a copy of the run"
        )
    return sorted(_differing_keys(then, now))


def _differing_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: set[str] = set()
        for key in set(a) | set(b):
            keys |= _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return set() if a == b else {prefix.rstrip(".")}


def tolerance_for(changes: list[str], args: Any) -> Tolerance:
    """Exact where the environment is the original's (or with --exact); else --rtol/--atol."""
    if args.exact or not changes:
        return EXACT
    return Tolerance(args.rtol, args.atol)


def compare_runs(original: Path, rerun: Path, tolerance: Tolerance = EXACT) -> list[Comparison]:
    """Every final metric of the two runs: summary values, then each per-epoch value of metrics.csv."""
    a, b = _summary(original), _summary(rerun)
    task = a.get("task")
    keys = (*SUMMARY_METRICS, *LABEL_SUMMARY_METRICS) if task == TASK_MULTILABEL else SUMMARY_METRICS
    rows = [Comparison(key, _dig(a, key), _dig(b, key), tolerance) for key in keys]
    fields = [f for f in epoch_columns(task) if f not in ("epoch", "seconds")]
    epochs_a, epochs_b = read_metrics(RunDir(original).metrics_csv), read_metrics(RunDir(rerun).metrics_csv)
    rows.append(Comparison("metrics.csv epochs", len(epochs_a), len(epochs_b)))
    for number, (row_a, row_b) in enumerate(zip(epochs_a, epochs_b), 1):
        rows.extend(Comparison(f"epoch {number} {f}", row_a[f], row_b[f], tolerance) for f in fields)
    return rows


def _summary(run_dir: Path) -> dict[str, Any]:
    path = RunDir(run_dir).summary_json
    if not path.is_file():
        raise UserError(f"{path} not found: the run did not finish (continue it with: cnntrain resume={run_dir})")
    summary = read_summary(path, "restore it from a copy of the run or re-run with --no-compare")
    for key, allowed in (("versions", (dict,)), ("git", (dict, type(None))), ("cpu", (dict, type(None)))):
        if key in summary and not isinstance(summary[key], allowed):
            raise UserError(
                f"{path}: '{key}' is {kind_of(summary[key])}, not a JSON object; restore the file from "
                f"a copy of the run or re-run with --no-compare"
            )
    return summary


def _dig(tree: Any, dotted: str, missing: Any = None) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part, missing) if isinstance(tree, dict) else missing
    return tree


def comparison_table(rows: list[Comparison]) -> Table:
    table = Table(title="original vs re-run", title_justify="left")
    for name, justify in (("metric", "left"), ("original", "right"), ("re-run", "right"), ("", "center")):
        table.add_column(name, justify=justify)
    for row in rows:
        mark = "=" if row.identical else "≈" if row.equal else "[red]differs[/]"
        table.add_row(markup(row.name), markup(row.original), markup(row.rerun), mark)
    return table


def cnntrain_command() -> list[str]:
    script = Path(sys.executable).parent / "cnntrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cnntrain"]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-reproduce", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run directory (it holds .hydra/ and summary.json)")
    p.add_argument(
        "--out", type=Path, default=None, help="where the re-run writes (default outputs/reproduce/<date>/<time>)"
    )
    p.add_argument("--no-compare", action="store_true", help="only re-run; do not compare metrics")
    p.add_argument(
        "--rtol",
        type=_non_negative,
        default=RTOL,
        help=f"where the environment differs: relative tolerance of each float (default {RTOL})",
    )
    p.add_argument(
        "--atol",
        type=_non_negative,
        default=ATOL,
        help=f"where the environment differs: absolute tolerance of each float (default {ATOL})",
    )
    p.add_argument("--exact", action="store_true", help="compare exactly even where the environment differs")
    return p


def _non_negative(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; give a tolerance >= 0, e.g. 0.01") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text} is not allowed; give a finite tolerance >= 0, e.g. 0.01")
    return value


def main() -> None:
    """Console-script entry point of cnntrain-reproduce."""
    run_command(_main)


def _main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    console = output_console()
    overrides, left_out = replayed_overrides(args.run_dir)
    summary = _summary(args.run_dir) if not args.no_compare else {}
    if not args.no_compare:
        read_metrics(RunDir(args.run_dir).metrics_csv)  # a damaged file is reported now, not after the re-run
    cfg = _compose_saved_or_say_where(args.run_dir, overrides)
    check_dataset_path(cfg, args.run_dir)
    for key in config_changes(args.run_dir, cfg):
        console.print(
            f"warning: config '{markup(key)}' composes differently now than in {markup(args.run_dir)}", style="yellow"
        )
    tolerance = _say_environment(console, summary, cfg, args) if summary else EXACT
    if left_out:
        console.print(
            f"not replayed (hydra settings, trackers and the cache folder belong to the original launch): "
            f"{markup(' '.join(left_out))}",
            style="yellow",
        )
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    from cnntrain.config.compose import quoted

    command = [*cnntrain_command(), *overrides, f"hydra.run.dir={quoted(out)}"]
    console.print(f"re-running {markup(args.run_dir)} into {markup(out)}: {markup(' '.join(command[1:]))}")
    status = subprocess.run(command).returncode
    if status != 0 or args.no_compare:
        sys.exit(status)
    rows = compare_runs(args.run_dir, out, tolerance)
    console.print(comparison_table(rows))
    differing = [row.name for row in rows if not row.equal]
    if differing:
        beyond = "" if tolerance.exact else f" beyond {str(tolerance).removeprefix('within ')}"
        console.print(f"{len(differing)} of {len(rows)} values differ{beyond} (first: {differing[0]})", style="red")
        sys.exit(1)
    identical = sum(row.identical for row in rows)
    if identical == len(rows):
        console.print(f"all {len(rows)} values are identical")
    else:
        console.print(f"all {len(rows)} values agree {tolerance} ({identical} identical)")


def _say_environment(console: Console, summary: dict[str, Any], cfg: Any, args: Any) -> Tolerance:
    """Before any number: whether what decides the floats is the original's, and so how values are compared."""
    changes = environment_changes(summary, cfg)
    tolerance = tolerance_for(changes, args)
    if not changes:
        console.print(
            "environment: the same as the original run's (versions, commit, device, CPU instruction "
            "set, threads): the values must be identical"
        )
        return tolerance
    console.print(f"environment differs from the original run's: {markup('; '.join(changes))}", style="yellow")
    console.print(
        f"float results may differ where these differ; values are compared {tolerance}"
        f"{'' if tolerance.exact else ' (--exact to insist on equality)'}",
        style="yellow",
    )
    return tolerance


if __name__ == "__main__":
    main()
