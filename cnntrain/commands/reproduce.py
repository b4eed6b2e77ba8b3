"""`cnntrain-reproduce RUN_DIR`: run a finished run again from its directory alone, then compare.

The re-run is the same `cnntrain` command (the overrides Hydra saved in RUN_DIR/.hydra, plus the
hydra settings that shape a single run) into a new directory. Its final metrics are compared with
the original's value by value, exactly: on the same machine and versions they must be bit-identical.
Exit status: 0 equal (or --no-compare), 1 some metric differs, 2 a user mistake, else the re-run's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, run_command
from cnntrain.config.names import EPOCH_COLUMNS
from cnntrain.errors import UserError
from cnntrain.reporting.run_dir import RunDir, read_metrics

# Hydra settings that belong to the original launch, not to what the run computes.
LAUNCH_ONLY = ("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.job.num", "hydra.job.id", "hydra.output_subdir",
               "hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper")
SUMMARY_METRICS = ("test.acc", "test.loss", "test_last.acc", "test_last.loss", "best.value", "best.epoch",
                   "epochs_run", "stopped_early")


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
    from omegaconf import OmegaConf

    paths = RunDir(run_dir)
    if not paths.overrides_yaml.is_file() or not paths.hydra_yaml.is_file():
        raise UserError(f"{run_dir} is not a cnntrain run directory (no .hydra/overrides.yaml and hydra.yaml)")
    task = [str(o) for o in OmegaConf.load(paths.overrides_yaml)]
    hydra_overrides = OmegaConf.load(paths.hydra_yaml).hydra.overrides.hydra
    return [*task, *(str(o) for o in hydra_overrides if not str(o).startswith(LAUNCH_ONLY))]


def compose_saved(overrides: list[str]) -> Any:
    """Today's config for the saved task overrides (the hydra ones shape the launch, not the config)."""
    from cnntrain.config.compose import compose_train

    return compose_train([o for o in overrides if not o.lstrip("+~").startswith("hydra")])


def config_changes(run_dir: Path, cfg: Any) -> list[str]:
    """Keys whose composed value today differs from the run's saved .hydra/config.yaml."""
    from omegaconf import OmegaConf

    now = OmegaConf.to_container(cfg, resolve=False)
    now.pop("hydra", None)
    then = OmegaConf.to_container(OmegaConf.load(RunDir(run_dir).config_yaml), resolve=False)
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
    rows = [Comparison(key, _dig(a, key), _dig(b, key)) for key in SUMMARY_METRICS]
    fields = [f for f in EPOCH_COLUMNS if f not in ("epoch", "seconds")]
    epochs_a, epochs_b = read_metrics(RunDir(original).metrics_csv), read_metrics(RunDir(rerun).metrics_csv)
    rows.append(Comparison("metrics.csv epochs", len(epochs_a), len(epochs_b)))
    for number, (row_a, row_b) in enumerate(zip(epochs_a, epochs_b), 1):
        rows.extend(Comparison(f"epoch {number} {f}", row_a[f], row_b[f]) for f in fields)
    return rows


def _summary(run_dir: Path) -> dict[str, Any]:
    path = RunDir(run_dir).summary_json
    if not path.is_file():
        raise UserError(f"{path} not found: the run did not finish (continue it with: cnntrain resume={run_dir})")
    return json.loads(path.read_text(encoding="utf-8"))


def _dig(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


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
    cfg = compose_saved(overrides)
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
