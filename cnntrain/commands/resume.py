"""`cnntrain resume=RUN_DIR`: what a resume continues, checked before Hydra starts the job.

A resume continues a run with the config its last checkpoint saved. The command line may change only the number
of processes and the destinations (which trackers, where they log, where caches go), which are never taken from
the checkpoint (a checkpoint someone sent chooses no MLflow server or cache folder here: cnntrain.config.saved).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

from cnntrain.commands.preflight import check_logger, parse_overrides
from cnntrain.config.compose import quoted
from cnntrain.config.saved import destinations_notice, is_destination, local_destinations
from cnntrain.errors import ConfigError, UserError

RESUME_OVERRIDES = ("trainer.devices",)
"""What a resume may change besides the destinations: the number of processes (checkpoints hold plain weights)."""
RESUME_DESTINATIONS = "logger, mlflow.KEY, wandb.KEY, dataset.cache_dir"
"""The destinations a resume takes from its command line (cnntrain.config.saved.is_destination), never from the
checkpoint: which trackers, where they log, where caches go."""


class Resume(NamedTuple):
    """What `cnntrain resume=RUN_DIR ...` continues: the run, its checked last checkpoint, the number of processes
    (None: the saved one) and the command's destination overrides."""

    run_dir: Path
    checkpoint: dict[str, Any]
    devices: int | None
    destinations: list[str]


def resume_target(overrides: list[str], multirun: bool) -> Resume | None:
    """The run a `cnntrain resume=RUN_DIR [trainer.devices=N] [logger=... mlflow.KEY=...]` continues, checked;
    None for any other command."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "resume" and "=" in o]
    if not values or values == ["null"]:
        return None
    destinations = [o for o in overrides if is_destination(o.split("=", 1)[0])]
    others = [
        o
        for o in overrides
        if o.split("=", 1)[0].lstrip("+") not in ("resume", *RESUME_OVERRIDES) and o not in destinations
    ]
    if multirun or len(values) > 1 or others:
        raise ConfigError(
            f"resume={values[0]} continues one run with its saved config; drop -m and the other "
            f"overrides ({' '.join(others) or 'a second resume='}); only "
            f"{', '.join(RESUME_OVERRIDES)} and the destinations ({RESUME_DESTINATIONS}) may change"
        )
    devices = _resume_devices(overrides)
    parse_overrides(destinations)  # Hydra's grammar, with the same hints as a new run's overrides
    from cnntrain.files import refuse_links_out
    from cnntrain.training.run import load_resume_checkpoint

    run_dir = Path(values[0].strip("'\"")).resolve()
    if run_dir.is_dir():
        refuse_links_out(run_dir)  # a shared run directory's links out are refused before anything is written
    checkpoint = load_resume_checkpoint(run_dir)
    if _finished(run_dir):
        raise ConfigError(
            f"resume={run_dir}: that run finished (its summary.json says done); cnntrain-eval tests it "
            f"again and cnntrain-reproduce runs it again"
        )
    if devices is not None or destinations:
        from cnntrain.training.run import resume_config

        cfg = resume_config(checkpoint, devices, destinations)  # the saved config so changed must still be valid
        if destinations:
            check_logger(cfg)  # the trackers' packages and MLflow's URI, as for a new run
    _say_local_destinations(checkpoint, run_dir, [o.split("=", 1)[0] for o in destinations])  # once all is well
    return Resume(run_dir, checkpoint, devices, destinations)


def _say_local_destinations(checkpoint: dict[str, Any], run_dir: Path, given: list[str]) -> None:
    """One line when the checkpoint names trackers or a cache folder of its own, which a resume does not take
    (cnntrain.config.saved.local_destinations); `given`: the destination keys the command sets."""
    changed = local_destinations(checkpoint["config"])[1] if isinstance(checkpoint.get("config"), dict) else []
    notice = destinations_notice(changed, f"the checkpoint of {run_dir}", given)
    if notice:
        print(notice, file=sys.stderr, flush=True)


def _resume_devices(overrides: list[str]) -> int | None:
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "trainer.devices" and "=" in o]
    if not values:
        return None
    if len(values) > 1 or not values[0].isdigit() or int(values[0]) < 1:
        raise ConfigError(f"trainer.devices={values[-1]}: expected a whole number >= 1")
    return int(values[0])


def _finished(run_dir: Path) -> bool:
    from cnntrain.reporting.run_dir import RunDir, read_summary

    try:
        return read_summary(RunDir(run_dir).summary_json).get("status") == "done"
    except UserError:  # torn, not a regular file, too large: not done
        return False


def resume_overrides(run_dir: Path) -> list[str]:
    """The overrides of a resume: the original run directory, whose .hydra/ it must not rewrite."""
    return [f"resume={quoted(run_dir)}", f"hydra.run.dir={quoted(run_dir)}", "hydra.output_subdir=null"]
