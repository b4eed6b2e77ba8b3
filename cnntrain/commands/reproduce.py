"""`cnntrain-reproduce RUN_DIR`: run a finished run again from its directory alone, then compare.

The re-run is the same `cnntrain` command (the overrides Hydra saved in RUN_DIR/.hydra, plus the
hydra settings that shape a single run) into a new directory. First what decides the floats is compared
(cnntrain version and commit, library versions, device, the CPU's instruction set, threads; see
cnntrain.reporting.provenance): where it is the same, the final metrics must be bit-identical and are
compared exactly; where it differs, the differences are named, float results may differ, and each float is
compared within a stated tolerance (--rtol, --atol; --exact insists on equality). Counts compare exactly.
Exit status: 0 equal (or --no-compare), 1 some metric differs, 2 a user mistake, else the re-run's own.
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
from rich.markup import escape
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, run_command
from cnntrain.config.names import EPOCH_COLUMNS
from cnntrain.errors import ConfigError, UserError
from cnntrain.files import kind_of, read_yaml
from cnntrain.reporting.run_dir import RunDir, read_metrics, read_summary

# Hydra settings that belong to the original launch, not to what the run computes.
LAUNCH_ONLY = ("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.job.num", "hydra.job.id", "hydra.output_subdir",
               "hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper")
SUMMARY_METRICS = ("test.acc", "test.loss", "test_last.acc", "test_last.loss", "best.value", "best.epoch",
                   "epochs_run", "stopped_early")
_MISSING = object()  # what _dig returns for an absent key when None is a value the file may hold
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
        return a is not None and b is not None and math.isclose(a, b, rel_tol=self.tolerance.rtol,
                                                                abs_tol=self.tolerance.atol)


def _float(value: Any) -> float | None:
    """A float value as a float (metrics.csv holds text); None for counts, flags and anything else."""
    if isinstance(value, bool) or isinstance(value, int):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if isinstance(value, str) and number.is_integer() and "." not in value else number


def saved_command(run_dir: Path) -> list[str]:
    """The overrides that made run_dir: its task overrides and the hydra ones that shape a single run."""
    paths = RunDir(run_dir)
    if not paths.overrides_yaml.is_file() or not paths.hydra_yaml.is_file():
        raise UserError(f"{run_dir} is not a cnntrain run directory (no .hydra/overrides.yaml and hydra.yaml)")
    task = _override_list(read_yaml(paths.overrides_yaml), paths.overrides_yaml, "")
    hydra_overrides = _override_list(_dig(read_yaml(paths.hydra_yaml), "hydra.overrides.hydra", missing=_MISSING),
                                     paths.hydra_yaml, "hydra.overrides.hydra ")
    return [*task, *(o for o in hydra_overrides if not o.startswith(LAUNCH_ONLY))]


def compose_saved(overrides: list[str]) -> Any:
    """Today's config for the saved task overrides (the hydra ones shape the launch, not the config)."""
    from cnntrain.config.compose import compose_train

    return compose_train([o for o in overrides if not o.lstrip("+~").startswith("hydra")])


def _compose_saved_or_say_where(run_dir: Path, overrides: list[str]) -> Any:
    try:
        return compose_saved(overrides)
    except ConfigError as err:
        raise ConfigError(f"the overrides saved in {RunDir(run_dir).overrides_yaml} do not compose today ({err}); "
                          f"edit them to today's config names") from None


def config_changes(run_dir: Path, cfg: Any) -> list[str]:
    """Keys whose composed value today differs from the run's saved .hydra/config.yaml."""
    from omegaconf import OmegaConf

    now = OmegaConf.to_container(cfg, resolve=False)
    now.pop("hydra", None)
    path = RunDir(run_dir).config_yaml
    then = read_yaml(path)
    if not isinstance(then, dict):
        raise UserError(f"{path} holds {kind_of(then)}, not the mapping of the run's config; restore it from a "
                        f"copy of the run")
    return sorted(_differing_keys(then, now))


def _differing_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: set[str] = set()
        for key in set(a) | set(b):
            keys |= _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return set() if a == b else {prefix.rstrip(".")}


def environment_changes(summary: dict[str, Any], cfg: Any) -> list[str]:
    """What decides the floats and differs between the original run's record (summary.json) and this machine:
    versions, device and its name, the CPU's instruction set and vector flags, threads, the commit."""
    then, now = float_facts(summary), float_facts(_current_facts(cfg))
    return [f"{key}: {_shown(then.get(key))} then, {_shown(value)} now" for key, value in now.items()
            if then.get(key) != value]


def float_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """The facts of a run's provenance that can change its floats, by the name a message gives them."""
    facts = {f"version of {k}": v for k, v in (summary.get("versions") or {}).items() if k != "hydra"}
    cpu = summary.get("cpu") if isinstance(summary.get("cpu"), dict) else {}
    git = summary.get("git") if isinstance(summary.get("git"), dict) else {}
    facts.update({
        "device": summary.get("device"), "device name": summary.get("device_name"),
        "cpu instruction set": cpu.get("capability"), "cpu vector flags": cpu.get("isa_flags"),
        "cpu dispatch variables": cpu.get("dispatch_env") or None, "threads": summary.get("threads"),
        "git commit": git.get("commit"), "uncommitted changes": git.get("dirty"),
    })
    return facts


def _current_facts(cfg: Any) -> dict[str, Any]:
    """This machine's provenance as the re-run will record it (its device and threads from the config)."""
    import torch

    from cnntrain.reporting.provenance import cpu, device_name, git_commit, versions
    from cnntrain.training.accel import resolve_device

    device = resolve_device(cfg.device)
    return {"versions": versions(), "cpu": cpu(), "git": git_commit(), "device": str(device),
            "device_name": device_name(device), "threads": cfg.threads or torch.get_num_threads()}


def _shown(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, list):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def tolerance_for(changes: list[str], args: Any) -> Tolerance:
    """Exact where the environment is the original's (or with --exact); else --rtol/--atol."""
    if args.exact or not changes:
        return EXACT
    return Tolerance(args.rtol, args.atol)


def compare_runs(original: Path, rerun: Path, tolerance: Tolerance = EXACT) -> list[Comparison]:
    """Every final metric of the two runs: summary values, then each per-epoch value of metrics.csv."""
    a, b = _summary(original), _summary(rerun)
    rows = [Comparison(key, _dig(a, key), _dig(b, key), tolerance) for key in SUMMARY_METRICS]
    fields = [f for f in EPOCH_COLUMNS if f not in ("epoch", "seconds")]
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
            raise UserError(f"{path}: '{key}' is {kind_of(summary[key])}, not a JSON object; restore the file from "
                            f"a copy of the run or re-run with --no-compare")
    return summary


def _dig(tree: Any, dotted: str, missing: Any = None) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part, missing) if isinstance(tree, dict) else missing
    return tree


def _override_list(value: Any, path: Path, key: str) -> list[str]:
    """A saved list of override strings, checked: Hydra writes one string per item."""
    if value is _MISSING:
        raise UserError(f"{path} lacks {key.strip()}, the overrides Hydra saves; restore it from a copy of the run")
    if not isinstance(value, list):
        raise UserError(f"{path}: {key}holds {kind_of(value)}, not a list of KEY=VALUE overrides; restore it from a "
                        f"copy of the run")
    for number, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise UserError(f"{path}: {key}item {number} is {kind_of(item)}, not a KEY=VALUE override string; "
                            f"fix it or restore the file from a copy of the run")
    return value


def comparison_table(rows: list[Comparison]) -> Table:
    table = Table(title="original vs re-run", title_justify="left")
    for name, justify in (("metric", "left"), ("original", "right"), ("re-run", "right"), ("", "center")):
        table.add_column(name, justify=justify)
    for row in rows:
        mark = "=" if row.identical else "≈" if row.equal else "[red]differs[/]"
        table.add_row(escape(row.name), escape(str(row.original)), escape(str(row.rerun)), mark)
    return table


def cnntrain_command() -> list[str]:
    script = Path(sys.executable).parent / "cnntrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cnntrain"]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-reproduce", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run directory (it holds .hydra/ and summary.json)")
    p.add_argument("--out", type=Path, default=None,
                   help="where the re-run writes (default outputs/reproduce/<date>/<time>)")
    p.add_argument("--no-compare", action="store_true", help="only re-run; do not compare metrics")
    p.add_argument("--rtol", type=_non_negative, default=RTOL,
                   help=f"where the environment differs: relative tolerance of each float (default {RTOL})")
    p.add_argument("--atol", type=_non_negative, default=ATOL,
                   help=f"where the environment differs: absolute tolerance of each float (default {ATOL})")
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
    console = Console(highlight=False)
    overrides = saved_command(args.run_dir)
    summary = _summary(args.run_dir) if not args.no_compare else {}
    if not args.no_compare:
        read_metrics(RunDir(args.run_dir).metrics_csv)  # a damaged file is reported now, not after the re-run
    cfg = _compose_saved_or_say_where(args.run_dir, overrides)
    for key in config_changes(args.run_dir, cfg):
        console.print(f"warning: config '{key}' composes differently now than in {args.run_dir}", style="yellow")
    tolerance = _say_environment(console, summary, cfg, args) if summary else EXACT
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    command = [*cnntrain_command(), *overrides, f"hydra.run.dir='{out}'"]
    console.print(f"re-running {args.run_dir} into {out}: {' '.join(command[1:])}")
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
        console.print("environment: the same as the original run's (versions, commit, device, CPU instruction "
                      "set, threads): the values must be identical")
        return tolerance
    console.print(f"environment differs from the original run's: {escape('; '.join(changes))}", style="yellow")
    console.print(f"float results may differ where these differ; values are compared {tolerance}"
                  f"{'' if tolerance.exact else ' (--exact to insist on equality)'}", style="yellow")
    return tolerance


if __name__ == "__main__":
    main()
