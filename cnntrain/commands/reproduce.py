"""`cnntrain-reproduce RUN_DIR`: run a finished run again from its directory alone, then compare.

The re-run is the same `cnntrain` command (the overrides Hydra saved in RUN_DIR/.hydra, plus the
hydra settings that shape a single run) into a new directory. Its final metrics are compared with
the original's value by value, exactly: on the same machine and versions they must be bit-identical.
Exit status: 0 equal (or --no-compare), 1 some metric differs, 2 a user mistake, else the re-run's own.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, run_command
from cnntrain.config.names import epoch_columns
from cnntrain.errors import ConfigError, UserError
from cnntrain.files import kind_of, read_yaml
from cnntrain.reporting.run_dir import RunDir, read_metrics, read_summary

# Hydra settings that belong to the original launch, not to what the run computes.
LAUNCH_ONLY = ("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.job.num", "hydra.job.id", "hydra.output_subdir",
               "hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper")
SUMMARY_METRICS = ("test.acc", "test.loss", "test_last.acc", "test_last.loss", "best.value", "best.epoch",
                   "epochs_run", "stopped_early")
LABEL_SUMMARY_METRICS = ("test.map", "test_last.map", "test.micro_f1", "test.hamming_loss")
"""Compared too when the runs are multi-label (and val/map per epoch)."""
_MISSING = object()  # what _dig returns for an absent key when None is a value the file may hold


@dataclass
class Comparison:
    name: str
    original: Any
    rerun: Any

    @property
    def equal(self) -> bool:
        return self.original == self.rerun


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
    """What differs between the original run's machine and this one: versions, device, threads, commit."""
    import torch

    from cnntrain.reporting.provenance import git_commit, versions
    from cnntrain.training.accel import resolve_device

    now = {f"version of {k}": v for k, v in versions().items()}
    now["device"] = str(resolve_device(cfg.device))
    now["threads"] = cfg.threads or torch.get_num_threads()
    then = {f"version of {k}": v for k, v in summary.get("versions", {}).items()}
    then["device"], then["threads"] = summary.get("device"), summary.get("threads")
    changes = [f"{key}: {then.get(key)} then, {value} now" for key, value in now.items() if then.get(key) != value]
    commit_then, commit_now = (summary.get("git") or {}).get("commit"), (git_commit() or {}).get("commit")
    if commit_then != commit_now:
        changes.append(f"git commit: {commit_then} then, {commit_now} now")
    return changes


def compare_runs(original: Path, rerun: Path) -> list[Comparison]:
    """Every final metric of the two runs: summary values, then each per-epoch value of metrics.csv."""
    a, b = _summary(original), _summary(rerun)
    task = a.get("task")
    keys = (*SUMMARY_METRICS, *LABEL_SUMMARY_METRICS) if task == "multilabel" else SUMMARY_METRICS
    rows = [Comparison(key, _dig(a, key), _dig(b, key)) for key in keys]
    fields = [f for f in epoch_columns(task) if f not in ("epoch", "seconds")]
    epochs_a, epochs_b = read_metrics(RunDir(original).metrics_csv), read_metrics(RunDir(rerun).metrics_csv)
    rows.append(Comparison("metrics.csv epochs", len(epochs_a), len(epochs_b)))
    for number, (row_a, row_b) in enumerate(zip(epochs_a, epochs_b), 1):
        rows.extend(Comparison(f"epoch {number} {f}", row_a[f], row_b[f]) for f in fields)
    return rows


def _summary(run_dir: Path) -> dict[str, Any]:
    path = RunDir(run_dir).summary_json
    if not path.is_file():
        raise UserError(f"{path} not found: the run did not finish (continue it with: cnntrain resume={run_dir})")
    summary = read_summary(path, "restore it from a copy of the run or re-run with --no-compare")
    for key, allowed in (("versions", (dict,)), ("git", (dict, type(None)))):
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
        table.add_row(row.name, str(row.original), str(row.rerun), "=" if row.equal else "[red]differs[/]")
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
    return p


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
    for change in environment_changes(summary, cfg) if summary else []:
        console.print(f"warning: {change}; metrics may differ", style="yellow")
    out = args.out or Path("outputs/reproduce") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    command = [*cnntrain_command(), *overrides, f"hydra.run.dir='{out}'"]
    console.print(f"re-running {args.run_dir} into {out}: {' '.join(command[1:])}")
    status = subprocess.run(command).returncode
    if status != 0 or args.no_compare:
        sys.exit(status)
    rows = compare_runs(args.run_dir, out)
    console.print(comparison_table(rows))
    differing = [row.name for row in rows if not row.equal]
    if differing:
        console.print(f"{len(differing)} of {len(rows)} values differ (first: {differing[0]})", style="red")
        sys.exit(1)
    console.print(f"all {len(rows)} values are identical")


if __name__ == "__main__":
    main()
