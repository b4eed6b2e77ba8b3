"""The `cnntrain` command: preflight, then the Hydra job; one clear line out on any user mistake.

A single run (`cnntrain KEY=VALUE ...`, `cnntrain resume=RUN_DIR`) is composed once: the preflight checks
that composition and learns what the data looks like, and the job runs on the same config and
description through Hydra's own job runner (run directory, .hydra/ files, callbacks, as `hydra.main`
makes them). Sweeps (-m) and Hydra's informational flags go through `hydra.main`, after the preflight
has checked every job. Torch is imported only once a run really starts (or a check needs it), so
`--help` and config errors stay fast. Composition is cnntrain.config.compose's; Hydra's job runner and
`hydra.main` are driven from here alone (the preflight uses Hydra's override parser, a sweep's job and the
sweep-end callback its job config). When the work began is left in cnntrain.commands.state, where Hydra's job
function reads it.

Hydra, torch and the run are imported inside the functions that use them, so `cnntrain --help` and the
one-line errors start without them (benchmarks/startup.py measures it).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cnntrain.commands.argv import CONFIG_DIR_FLAGS, INFO_FLAGS, flag_value, split_argv
from cnntrain.commands.entry import debugging, in_process_only, run_command
from cnntrain.commands.preflight import check_group_choices, known_data, parse_overrides, preflight
from cnntrain.commands.resume import Resume, resume_overrides, resume_target
from cnntrain.commands.state import COMMAND, PROCESS_STARTED
from cnntrain.config.compose import (
    CONFIG_NAME,
    VERSION_BASE,
    compose_train,
    composition_message,
    config_dir,
    group_options,
    hydra_session,
    legacy_augment_overrides,
)
from cnntrain.config.names import CONFIG_GROUPS
from cnntrain.disk import raise_if_disk
from cnntrain.errors import ConfigError, Interrupted, UserError, first_line


def main() -> None:
    """Console-script entry point: preflight, then the job; user errors exit with status 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us; we print them as one line
    signal.signal(signal.SIGTERM, _on_sigterm)
    run_command(_main)


def print_help(overrides: list[str]) -> None:
    """`cnntrain --help`: the template in train.yaml (hydra.help) filled with our groups and the config.

    Rendered here rather than by Hydra, whose help also walks every installed launcher and sweeper
    group (a second with the optional plugins installed).
    """
    from omegaconf import OmegaConf

    check_group_choices(parse_overrides(overrides), multirun=False)
    cfg = compose_train(overrides, hydra_config=True)
    template = cfg.hydra.help.template
    groups = "\n".join(f"{group}: {', '.join(group_options(group))}" for group in CONFIG_GROUPS)
    cfg = OmegaConf.to_container(cfg, resolve=False)
    cfg.pop("hydra")
    text = template.replace("$APP_CONFIG_GROUPS", groups + "\n").replace("$CONFIG", OmegaConf.to_yaml(cfg))
    sys.stdout.write(text + "\n")


class JobStopped(BaseException):
    """Carries a UserError out of a job past Hydra, which would print its own line for an Exception."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


def _main(argv: list[str]) -> None:
    execute(argv)


def execute(argv: list[str], started: float = PROCESS_STARTED) -> Path | None:
    """Do what `cnntrain ARGV` asks (`started`: the perf_counter() reading its work is timed from); returns the
    run directory of a run, the sweep directory of a sweep, None for help and the informational flags. The
    command and the Python API (cnntrain.api) both come here, so they make the same runs."""
    COMMAND.started = started
    if _started_by_torchrun() and _follow_rank_zero():
        return None
    argv = legacy_augment_overrides(argv)
    flags, overrides, multirun = split_argv(argv)
    if multirun and _started_by_torchrun():
        raise ConfigError(
            "torchrun starts the ranks of one run; for a sweep of data-parallel jobs run "
            "cnntrain -m trainer.devices=N ... without torchrun"
        )
    extra_dir = flag_value(flags, CONFIG_DIR_FLAGS)
    if extra_dir is not None and not Path(extra_dir).is_dir():
        raise ConfigError(f"--config-dir {extra_dir}: no such folder (it should hold group folders such as model/)")
    try:
        resume = resume_target(overrides, multirun)
        if flags and set(flags) <= {"--help", "-h"} and resume is None:
            print_help(overrides)
            return None
        if not set(flags) - set(CONFIG_DIR_FLAGS) - {flag_value(flags, CONFIG_DIR_FLAGS)}:
            return _single_run(overrides, flag_value(flags, CONFIG_DIR_FLAGS), resume)
        sweep_dir = None
        if not INFO_FLAGS.intersection(flags):
            preflight(overrides, multirun, extra_dir=flag_value(flags, CONFIG_DIR_FLAGS))
            if multirun:
                from cnntrain.commands.sweep_job import pin_paths

                argv, sweep_dir = pin_paths(argv, overrides)
        _hydra_main(argv)
        return sweep_dir
    except JobStopped as stopped:
        raise stopped.error from None
    except Exception as err:
        if not debugging() and isinstance(err, OSError) and err.filename:  # a sweep's folders on such a disk
            raise_if_disk(err, Path(err.filename))
        if debugging() or isinstance(err, UserError) or not _is_config_exception(err):
            raise
        raise ConfigError(composition_message(err, overrides)) from None


def _started_by_torchrun() -> bool:
    """Checked without importing torch, so a plain command stays fast."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _follow_rank_zero() -> bool:
    from cnntrain.training.launch import follow_rank_zero

    return follow_rank_zero()


def _single_run(overrides: list[str], extra_dir: str | None, resume: Resume | None) -> Path:
    """Compose once, check that composition, and run it as Hydra's job (run directory and .hydra/ files);
    returns the run directory."""
    in_process_only()
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext

    with hydra_session(extra_dir) as hydra:
        if resume is not None:
            composed = compose_train(
                [*resume_overrides(resume[0]), "hydra.mode=RUN"], hydra=hydra, hydra_config=True, log_configuration=True
            )
            task = lambda _cfg: _resume_task(*resume)
        else:
            checked = preflight(
                [*overrides, "hydra.mode=RUN"], multirun=False, hydra=hydra, extra_dir=extra_dir, keep_hydra=True
            )
            composed, cfg, description = checked.composed[0], checked.configs[0], checked.descriptions[0]
            task = lambda _cfg: _run_task(cfg, description)
        callbacks = Callbacks(composed)
        callbacks.on_run_start(config=composed, config_name=CONFIG_NAME)
        try:
            ret = run_job(
                hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                task_function=task,
                config=composed,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
                configure_logging=True,
            )
        except OSError as err:  # the run directory or .hydra/ on a disk that refuses them (a close names no file)
            raise_if_disk(err, Path(err.filename or Path(composed.hydra.runtime.output_dir) / ".hydra"))
            raise
        callbacks.on_run_end(config=composed, config_name=CONFIG_NAME, job_return=ret)
        _ = ret.return_value  # re-raises what the job raised
        return Path(ret.hydra_cfg.hydra.runtime.output_dir)


def _run_task(cfg: Any, description: Any) -> float:
    """The job of a single run: the preflight's validated config and data description, trained (on as many
    processes as trainer.devices asks for, or as torchrun started)."""
    from cnntrain.training.launch import train_job

    return _as_job(lambda run_dir: train_job(cfg, run_dir, description=description, started=COMMAND.started))


def _resume_task(run_dir: Path, checkpoint: dict[str, Any], devices: int | None, destinations: list[str]) -> float:
    from cnntrain.training.launch import train_job
    from cnntrain.training.run import resume_config

    cfg = resume_config(checkpoint, devices, destinations)
    return _as_job(
        lambda _: train_job(cfg, run_dir, checkpoint=checkpoint, destinations=destinations, started=COMMAND.started)
    )


def _as_job(body: Any) -> float:
    """Run a job's body in Hydra's run directory. A user error found there leaves summary.json saying
    `status: failed` and why, so the directory never looks like a run to resume or compare; Ctrl-C does
    not (the run can be resumed)."""
    from hydra.core.hydra_config import HydraConfig

    from cnntrain.reporting.run_dir import RunDir, write_failure

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    started = time.perf_counter()
    try:
        return body(run_dir)
    except Interrupted as err:
        raise JobStopped(err) from err
    except UserError as err:
        write_failure(RunDir(run_dir).summary_json, str(err), time.perf_counter() - started)
        raise JobStopped(err) from err


def _sweep_task(cfg: Any) -> float:
    """What Hydra runs for each job of a sweep (and for the informational flags' runs)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cnntrain.commands.sweep_job import sweep_job
    from cnntrain.config.validate import validate
    from cnntrain.training.launch import train_job

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        cfg = validate(cfg)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return sweep_job(cfg, run_dir, hydra_cfg.job.num)
        return train_job(cfg, run_dir, started=COMMAND.started, description=known_data(cfg.dataset))
    except UserError as err:
        raise JobStopped(err) from err


def _hydra_main(argv: list[str]) -> None:
    import hydra

    sys.argv = [sys.argv[0], *argv]
    entry = hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base=VERSION_BASE)(_sweep_task)
    try:
        entry()
    except ConnectionError as err:  # the launcher's cluster (Ray's) is not there
        if debugging():
            raise
        raise ConfigError(
            f"the sweep's launcher cannot reach its cluster: {first_line(err)}; for "
            f"hydra/launcher=ray_cluster start one with `ray start --head` (or set RAY_ADDRESS or "
            f"hydra.launcher.ray.init.address=HOST:PORT)"
        ) from None


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")  # the same clean stop as Ctrl-C (cnntrain.training.run says how to resume)


def _is_config_exception(err: Exception) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(err, (HydraException, OmegaConfBaseException))


if __name__ == "__main__":
    main()
