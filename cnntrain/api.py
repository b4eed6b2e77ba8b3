"""cnntrain from Python: `train`, `sweep`, `load`, `compose`, on the same path as the `cnntrain` command.

    import cnntrain
    run = cnntrain.train("model=lenet", "dataset=fashion", **{"trainer.epochs": 3})
    run.summary["test"]["acc"], run.predict(["shoe.png"], top_k=3), run.export(format="onnx")

A call builds the command line the same overrides would make and runs it through the command's own code
(cnntrain.commands.train.execute): one composition, the same preflight, the same run directory under
outputs/ of the working directory, Hydra's .hydra/ files, so `cnntrain-reproduce` and `cnntrain resume=` work
on it and the metrics are the command's, bit for bit. Afterwards the process is as it was before the call
(cnntrain.process_state), whether the call returned, raised a UserError or was interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntrain.config.compose import compose_train, hydra_session, override_value
from cnntrain.errors import ConfigError, Interrupted, UserError
from cnntrain.process_state import preserved
from cnntrain.results import Run, Sweep

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["Run", "RunInterrupted", "Sweep", "UserError", "audit", "compose", "load", "sweep", "train"]

CONFIG_DIR_KEY = "config_dir"  # train(config_dir=DIR) is the command's --config-dir DIR


class RunInterrupted(Interrupted, KeyboardInterrupt):
    """Ctrl-C (a notebook's interrupt) stopped a run: a KeyboardInterrupt, as Python code expects, and a
    cnntrain UserError whose message says how to continue (`cnntrain.train(resume=...)`)."""


def train(*overrides: str, **keys: Any) -> Run:
    """Train one run, as `cnntrain OVERRIDES` would, and return it.

    Overrides are the command line's (`"model=lenet"`, `"optimizer.lr=3e-4"`); keyword arguments add more:
    `model="lenet"`, `**{"trainer.epochs": 3}`, `resume=run` (a Run or its directory). A string is taken as
    typed on a command line; numbers, booleans, None, lists, dicts and paths are written in Hydra's syntax.
    `config_dir=DIR` is the command's --config-dir (more configs beside cnntrain's own).
    """
    argv = _argv(overrides, keys, sweep=False)
    return Run(_execute(argv))


def sweep(*overrides: str, **keys: Any) -> Sweep:
    """Run a sweep, as `cnntrain -m OVERRIDES` would (Hydra's sweepers and launchers, sweep_summary.csv), and
    return it. A list or tuple given as a keyword argument is the sweep over its values:
    `cnntrain.sweep(**{"optimizer.lr": [1e-3, 3e-4]})` is `cnntrain -m optimizer.lr=0.001,0.0003`."""
    argv = _argv(overrides, keys, sweep=True)
    return Sweep(_execute(["-m", *argv]))


def audit(*overrides: str, **keys: Any) -> Any:
    """Audit a dataset, as `cnntrain-audit OVERRIDES` would, and return what it found (counts, files, the line).

    Overrides name the data (and change the fold runs' recipe), as for `train`; these keywords are the command's
    flags: out (the folder, default ./audit), folds (K, default 5), recipe ("fast" or "config"), runs (a finished
    K-fold sweep, or a list of its runs, instead of training), fix ("drop" or "relabel"), phash_distance."""
    from cnntrain.commands.audit import execute  # torch, Hydra: when an audit runs

    flags = []
    for name in AUDIT_FLAGS:
        if name in keys:
            value = keys.pop(name)
            values = value if name == "runs" and isinstance(value, (list, tuple)) else [value]
            flags += [f"--{name.replace('_', '-')}", *(str(v) for v in values)]
    argv = [*flags, *_overrides(overrides, keys, sweep=False)]
    with preserved():
        os.environ["HYDRA_FULL_ERROR"] = "1"
        return execute(argv)


AUDIT_FLAGS = ("out", "folds", "recipe", "runs", "fix", "phash_distance")


def load(path: str | os.PathLike[str] | Run) -> Run:
    """A run directory cnntrain wrote (finished, failed or interrupted), to look at, evaluate or predict with."""
    return Run(path.dir if isinstance(path, Run) else path)


def compose(*overrides: str, **keys: Any) -> DictConfig:
    """The config `train` would run with these overrides, composed and validated (checked against the schema,
    not yet against the data), for inspection. Nothing is written and the data is not read."""
    from cnntrain.commands.preflight import check_group_choices, parse_overrides  # omegaconf: when a call composes
    from cnntrain.config.validate import validate

    extra_dir = _config_dir(keys)
    listed = _overrides(overrides, keys, sweep=False)
    with preserved(torch_state=False):
        check_group_choices(parse_overrides(listed), multirun=False, extra_dir=extra_dir)
        with hydra_session(extra_dir) as session:
            return validate(compose_train(listed, hydra=session))


def _execute(argv: list[str]) -> Path:
    """The command's own code on `argv`, inside preserved process state; Ctrl-C in a run is RunInterrupted."""
    from cnntrain.commands.train import execute  # omegaconf, rich: when a call runs
    from cnntrain.reporting.console import PLAIN_PROGRESS_ENV

    with preserved():
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what a job raised rather than printing it and exiting
        if _in_notebook():
            os.environ[PLAIN_PROGRESS_ENV] = "1"  # for the ranks of trainer.devices=N (this process updates in place)
        _next_free_second(argv)
        sys.argv = ["cnntrain", *argv]  # summary.json's "command": the command line that makes the same run
        try:
            result = execute(argv, started=time.perf_counter())
        except Interrupted as err:
            raise RunInterrupted(str(err), err.exit_code) from None
    if result is None:  # only help and informational flags return nothing, and _argv lets none through
        raise ConfigError("nothing was run")
    return result


def _next_free_second(argv: list[str]) -> None:
    """Calls in a loop can start twice within a second, and the default run directory is named by the second
    (outputs/<date>/<time>, as the command names it): wait for the next second rather than share a directory."""
    if any(arg.split("=", 1)[0].lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir", "resume") for arg in argv):
        return
    root = Path("outputs", "multirun") if "-m" in argv else Path("outputs")
    while (root / time.strftime("%Y-%m-%d/%H-%M-%S")).exists():
        time.sleep(1.0 - time.time() % 1.0 + 0.01)


def _in_notebook() -> bool:
    from rich.console import Console  # rich: when a call runs

    return Console().is_jupyter


def _argv(overrides: tuple[str, ...], keys: dict[str, Any], *, sweep: bool) -> list[str]:
    extra_dir = _config_dir(keys)
    flags = ["--config-dir", extra_dir] if extra_dir is not None else []
    return [*flags, *_overrides(overrides, keys, sweep=sweep)]


def _config_dir(keys: dict[str, Any]) -> str | None:
    value = keys.pop(CONFIG_DIR_KEY, None)
    if value is None:
        return None
    if not Path(value).is_dir():
        raise ConfigError(f"config_dir={value}: no such folder (it should hold group folders such as model/)")
    return str(value)


def _overrides(overrides: tuple[str, ...], keys: dict[str, Any], *, sweep: bool) -> list[str]:
    """The command-line overrides of positional strings and keyword arguments."""
    listed = []
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(
                f"override {item!r} is not a string; write overrides as 'KEY=VALUE' strings, or pass "
                f"KEY=VALUE as keyword arguments"
            )
        if item.startswith("-"):
            raise ConfigError(
                f"'{item}': flags are for the command line; cnntrain.train and cnntrain.sweep take "
                f"KEY=VALUE overrides (a sweep is cnntrain.sweep(...), --config-dir is config_dir=)"
            )
        listed.append(item)
    for key, value in keys.items():
        listed.append(f"{key}={override_value(value, sweep=sweep)}")
    return listed
