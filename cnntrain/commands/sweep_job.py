"""One job of a sweep (-m): placed on its share of the machine, continued where an earlier run of the same
sweep left it, and never the end of the sweep when it fails.

A launcher may run the jobs in another folder and environment (a Ray worker runs where `ray start` ran), so
the sweep directory and the data root are pinned, as absolute paths, in the process that starts the sweep
(`pin_paths`).

Running a sweep again with the same command and the same hydra.sweep.dir continues it: a job whose
summary.json says done is kept as it is, a job with a checkpoints/last.pt resumes from it, the others start.
A job directory that holds a run of another config stops the sweep with one line rather than mixing two
sweeps' results (Hydra has only rewritten that job's .hydra/ by then).

Hydra, torch and the run are imported inside the functions that use them: a sweep's parent process and
`cnntrain --help` import this module without them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cnntrain.commands.entry import debugging, report
from cnntrain.commands.preflight import known_data
from cnntrain.config.flat import flatten
from cnntrain.errors import ConfigError, Interrupted, UserError, first_line

QUOTES = "'\""
IGNORED_KEYS = ("resume", "trainer.progress")
"""Keys that may differ between the first run of a sweep and its continuation (besides what the data decided)."""


def pin_paths(argv: list[str], overrides: list[str]) -> tuple[list[str], Path]:
    """argv (and the sweep directory it pins) with hydra.sweep.dir and data_root made absolute here: the sweep
    directory as this process resolves it (its time stamp included), a relative data_root= against this folder,
    and the data root that CNNTRAIN_DATA_ROOT gives set in every job's environment (Hydra's hydra.job.env_set)."""
    from cnntrain.commands.preflight import expand_jobs, parse_overrides
    from cnntrain.config.compose import compose_train
    from cnntrain.config.compose import quoted as _quoted

    hydra_overrides = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    jobs = expand_jobs(parse_overrides(overrides))
    composed = compose_train([*(jobs[0] if jobs else []), *hydra_overrides], hydra_config=True)
    sweep_dir = Path(str(composed.hydra.sweep.dir)).resolve()
    pinned = [arg for arg in argv if arg.split("=", 1)[0].lstrip("+") not in ("hydra.sweep.dir", "data_root")]
    pinned.append(f"hydra.sweep.dir={_quoted(sweep_dir)}")
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "data_root":
            plain = "," not in value and "${" not in value  # a sweep over roots, or an interpolation: as given
            pinned.append(f"{key}={_quoted(Path(value.strip(QUOTES)).resolve())}" if plain else arg)
    root = os.environ.get("CNNTRAIN_DATA_ROOT")
    if root:
        pinned.append(f"+hydra.job.env_set.CNNTRAIN_DATA_ROOT={_quoted(Path(root).resolve())}")
    return pinned, sweep_dir


def sweep_job(cfg: Any, run_dir: Path, job_num: int) -> float:
    """Run (or keep, or resume) one job; a failure is recorded in its summary.json and the sweep goes on (NaN).

    Any exception counts (a CUDA out-of-memory from a large batch size is a typical one); Ctrl-C still
    stops the whole sweep, and CNNTRAIN_DEBUG=1 lets the first failure end it with its traceback.
    """
    from hydra.core.hydra_config import HydraConfig

    from cnntrain.commands.placement import needs_fresh_process, placed
    from cnntrain.reporting.run_dir import RunDir, write_failure
    from cnntrain.training.launch import train_job
    from cnntrain.training.run_state import resume_point

    started = time.perf_counter()
    earlier = earlier_run(cfg, run_dir, job_num)
    if earlier is not None and earlier.get("status") == "done":
        report_note(f"job {job_num}: done in an earlier run of this sweep, kept ({run_dir})")
        value = (earlier.get("best") or {}).get("value")
        return float(value) if isinstance(value, (int, float)) else float("nan")
    try:
        with placed(cfg, HydraConfig.get()) as placement:
            checkpoint = earlier.get("checkpoint") if earlier else None
            if checkpoint is not None:
                report_note(f"job {job_num}: resuming {resume_point(checkpoint)} ({run_dir})")
            return train_job(
                cfg,
                run_dir,
                description=known_data(cfg.dataset),
                checkpoint=checkpoint,
                fresh_process=needs_fresh_process(placement),
            )
    except Interrupted:
        raise
    except Exception as err:
        if debugging():
            raise
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {first_line(err)}"
        if os.environ.get("RANK", "0") == "0":  # the other ranks of a multi-task SLURM job leave it to rank 0
            write_failure(RunDir(run_dir).summary_json, message, time.perf_counter() - started)
            report(f"job {job_num} failed: {message}")
        return float("nan")


def earlier_run(cfg: Any, run_dir: Path, job_num: int) -> dict[str, Any] | None:
    """What an earlier run of this sweep left in the job's directory: its summary when it finished, its
    last checkpoint when it can be resumed, None when there is nothing to continue (or only a failure)."""
    from cnntrain.reporting.run_dir import RunDir, read_summary
    from cnntrain.training.checkpoints import load_checkpoint

    paths = RunDir(run_dir)
    if not paths.last.is_file():
        return None
    checkpoint = load_checkpoint(paths.last)
    saved = checkpoint.get("config") or {}
    differs = config_difference(saved, _plain(cfg, saved))
    if differs:
        raise ConfigError(
            f"hydra.sweep.dir={run_dir.parent} holds job {job_num} of another sweep (its config "
            f"differs in {', '.join(differs[:3])}); give this sweep a new hydra.sweep.dir"
        )
    try:
        summary = read_summary(paths.summary_json)
    except UserError:
        summary = {}  # a torn summary: the job runs again from its last checkpoint
    if summary.get("status") == "done":
        return summary
    return {"checkpoint": checkpoint}


def config_difference(saved: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Keys (dotted) whose value in the fresh config differs from the saved one. What the run wrote into the
    dataset config from the data itself (its shape, classes and statistics) does not count, nor do keys the
    saved run did not have (a cnntrain version that added them still runs it as it ran), nor the spelling of
    `logger` (`csv` and `[csv]` are the same choice)."""
    from cnntrain.config.validate import chosen_loggers
    from cnntrain.data.description import DataDescription

    ignored = {*IGNORED_KEYS, *(f"dataset.{key}" for key in DataDescription.FILLED_KEYS), "logger"}
    saved_flat, fresh_flat = flatten(saved), flatten(fresh)
    differs = [
        key
        for key, value in fresh_flat.items()
        if key not in ignored and key in saved_flat and saved_flat[key] != value
    ]
    if chosen_loggers(saved.get("logger", "csv")) != chosen_loggers(fresh.get("logger", "csv")):
        differs.insert(0, "logger")
    return differs


def report_note(message: str) -> None:
    print(message, flush=True)


def _plain(cfg: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """The fresh config, resolved as the saved run resolved it: what the run filled in from the data (an image
    folder's classes, hence its num_classes and a last layer of `${dataset.num_classes}`) is taken from the saved
    config where the fresh one leaves it null, so a finished job of such data is recognised as this sweep's."""
    from omegaconf import OmegaConf

    from cnntrain.data.description import DataDescription

    fresh = OmegaConf.to_container(cfg, resolve=False)
    dataset, kept = fresh.get("dataset") or {}, saved.get("dataset") or {}
    for key in DataDescription.FILLED_KEYS:
        if dataset.get(key) is None and kept.get(key) is not None:
            dataset[key] = kept[key]
    return OmegaConf.to_container(OmegaConf.create(fresh), resolve=True)
