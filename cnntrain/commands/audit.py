"""`cnntrain-audit [OVERRIDES]`: train K fold runs of the dataset the overrides name (a sweep over
dataset.fold, through cnntrain's own sweep machinery: launchers, resume, trackers), or read a finished K-fold
sweep (--runs), then audit its data into one folder (cnntrain.auditing): likely label errors, duplicates and leaks,
outliers, a cleaned label file and audit.html. Only the arguments and the sweep are here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.auditing.extra import check_installed
from cnntrain.commands.entry import ArgumentParser, run_command
from cnntrain.errors import ConfigError, UserError

# The recipes a fold run can follow; the user's own overrides come after a recipe's, so they win.
RECIPES = {
    # A small, fast net for a few epochs: K of these cost about one full training of a mid-size model.
    "fast": ["model=fast-cnn3", "trainer.epochs=3", "report.plots=false"],
    # The config as given (cnntrain's defaults and the overrides): any model, any schedule.
    "config": [],
}
FOLD_KEYS = ("dataset.folds", "dataset.fold")


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-audit",
        description="Find likely label errors, duplicates across splits and outliers from out-of-fold predictions.",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="the dataset (and recipe changes), as for cnntrain"
    )
    p.add_argument("--out", type=Path, default=Path("audit"), help="the audit's folder (default: ./audit)")
    p.add_argument("--folds", type=int, default=5, help="K, the number of folds (default 5)")
    p.add_argument("--recipe", default="fast", help=f"how each fold trains: {' | '.join(RECIPES)} (default fast)")
    p.add_argument("--runs", type=Path, nargs="+", default=None, help="a finished K-fold sweep (or its runs) instead")
    p.add_argument("--fix", default="drop", help="what the cleaned labels do with a flagged label: drop | relabel")
    p.add_argument(
        "--phash-distance", type=int, default=20, help="bits of the 256-bit pHash a near-duplicate may differ in (20)"
    )
    return p


def _main(argv: list[str]) -> None:
    print(execute(argv).line())


def execute(argv: list[str]) -> Any:
    """Do what `cnntrain-audit ARGV` asks and return what it found (cnntrain.auditing.result.AuditResult); the
    command and cnntrain.audit(...) both come here."""
    from cnntrain.auditing.run import audit_runs  # torch: when an audit runs

    args = parser().parse_intermixed_args(argv)
    if args.recipe not in RECIPES:
        raise ConfigError(f"--recipe {args.recipe}: expected one of {', '.join(RECIPES)}")
    if args.fix not in ("drop", "relabel"):
        raise ConfigError(f"--fix {args.fix}: expected drop or relabel")
    if args.runs and args.overrides:
        raise ConfigError(
            f"{args.overrides[0]}: with --runs the audit reads the data the runs read; "
            "give overrides or --runs, not both"
        )
    check_installed()
    runs = fold_runs(args.runs) if args.runs else train_folds(args.overrides, args.out, args.folds, args.recipe)
    return audit_runs(runs, args.out, action=args.fix, max_distance=args.phash_distance)


def fold_runs(given: list[Path]) -> list[Path]:
    """The run directories of a sweep folder (its numbered jobs), or the run directories as given."""
    runs = []
    for path in given:
        if not path.is_dir():
            raise UserError(f"--runs {path}: no such folder (a K-fold sweep's folder or its run directories)")
        jobs = sorted(d for d in path.iterdir() if (d / "checkpoints").is_dir())
        runs += jobs if not (path / "checkpoints").is_dir() else [path]
    if not runs:
        raise UserError(f"--runs {' '.join(map(str, given))}: no run directories there (none has checkpoints/)")
    return runs


def train_folds(overrides: list[str], out: Path, folds: int, recipe: str) -> list[Path]:
    """Check the data, then run the K folds as one sweep into OUT/folds (a finished fold is kept when the same
    audit runs again; an interrupted one resumes) and return its job directories."""
    from cnntrain.commands.train import execute  # Hydra, torch: when folds are trained

    if folds < 2:
        raise ConfigError(f"--folds {folds}: the audit needs K >= 2 folds")
    for item in overrides:
        if item.split("=", 1)[0].lstrip("+~") in FOLD_KEYS:
            raise ConfigError(f"{item}: the audit sets dataset.folds and dataset.fold itself; use --folds K")
    cfg = _composed([*RECIPES[recipe], *overrides])
    check_pool(cfg, folds, out)
    sweep = (out / "folds").resolve()
    argv = [
        "-m",
        *RECIPES[recipe],
        *overrides,
        f"dataset.folds={folds}",
        f"dataset.fold={','.join(str(i) for i in range(folds))}",
        f"hydra.sweep.dir={sweep}",
    ]
    execute(argv)
    runs = sorted((d for d in sweep.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    failed = [d for d in runs if not (d / "checkpoints" / "best.pt").is_file()]
    if failed:
        raise UserError(f"fold run {failed[0]} did not finish (see its summary.json); run the same audit to resume")
    return runs


def _composed(overrides: list[str]) -> Any:
    from cnntrain.commands.preflight import check_group_choices, parse_overrides
    from cnntrain.config.compose import compose_train, hydra_session
    from cnntrain.config.validate import validate

    check_group_choices(parse_overrides(overrides), multirun=False)
    with hydra_session() as session:
        return validate(compose_train(overrides, hydra=session))


def check_pool(cfg: Any, folds: int, out: Path) -> None:
    """Before any fold trains: an --out outside the data, a source with keys, K images of every class."""
    from cnntrain.auditing.keys import check_pool as check
    from cnntrain.auditing.run import check_outside_data
    from cnntrain.config.schema import DatasetConfig, section

    data = section(cfg.dataset, DatasetConfig)
    check_outside_data(out, data)
    check(data, int(cfg.seed), folds)


def main() -> None:
    run_command(_main)


if __name__ == "__main__":
    main()
