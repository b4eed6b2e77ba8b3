"""One run, start to finish: setup -> fit -> test -> report, everything written into the run directory.

This is the composition root of a training run: it takes the validated config (a DictConfig; Hydra itself stays
in cnntrain.commands) and gives each part its section: setup builds the data, the model and the typed trainer
section from it, the loop gets FitSettings over that section, the loggers their own sections and the resolved
config as plain data. The report and the task (the loss, the checkpoint metric) still read the whole config.
A resume starts from last.pt, read and checked as a RunState (cnntrain.training.run_state).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cnntrain.config.names import epoch_columns
from cnntrain.config.saved import saved_config_data, with_destinations
from cnntrain.config.schema import MLflowConfig, WandbConfig, section
from cnntrain.config.validate import validate
from cnntrain.data.augment import build_augment
from cnntrain.data.balance import class_counts
from cnntrain.data.description import DataDescription
from cnntrain.errors import CheckpointError, Interrupted, Stopped
from cnntrain.reporting.augment_preview import write_augment_preview
from cnntrain.reporting.console import Reporter
from cnntrain.reporting.loggers import Logger, open_loggers
from cnntrain.reporting.metrics import FitResult
from cnntrain.reporting.report import Tested
from cnntrain.reporting.run_dir import RunDir, write_bad_images
from cnntrain.reporting.tables import summary_table
from cnntrain.reporting.text import markup
from cnntrain.training.accel import Accel
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.distributed import SINGLE, Ranks
from cnntrain.training.evaluation import unwrap
from cnntrain.training.finetune import frozen_note, model_size
from cnntrain.training.interruptions import StopRequested, StopSignals, stop_message, stop_status
from cnntrain.training.loop import FitSettings, fit
from cnntrain.training.run_state import RunState, check_resume, check_world, resume_point
from cnntrain.training.setup import RunSetup, setup


def run(
    cfg: DictConfig,
    run_dir: Path,
    *,
    reporter: Reporter | None = None,
    started: float | None = None,
    resume: dict[str, Any] | None = None,
    description: DataDescription | None = None,
    ranks: Ranks = SINGLE,
) -> float:
    """Train, validate and test one config; write everything into run_dir; return the monitored metric.

    In a data-parallel run every rank calls this with the same arguments (`ranks` says which it is); rank 0
    alone writes files and draws progress, the others print to their own log (see cnntrain.training.launch).

    `started` is the perf_counter() reading when the process began its work (the CLI passes its own),
    so summary.json can tell start-up apart from training and evaluation. `resume` is the run's
    checkpoints/last.pt payload (see resume_run); `description` is what the preflight learned about the
    data. Ctrl-C becomes Interrupted, whose message says how to continue; SIGTERM, SIGUSR1 and SIGUSR2 (handled
    while the run lasts) save last.pt at the next training step and become Stopped (exit status 128 + the
    signal's number); one that comes before training stops at its first step, one during the final test and
    report lets the run finish. last.pt is only ever replaced whole.
    """
    started = time.perf_counter() if started is None else started
    paths = RunDir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    own_reporter = reporter is None
    reporter = reporter or Reporter(paths.train_log if ranks.main else None)
    loggers: list[Logger] = []
    signals = StopSignals()
    try:
        with signals:
            return _run(cfg, paths, reporter, loggers, started, resume, description, ranks, signals)
    except StopRequested as stop:
        signals.pass_on(stop.signum)  # the handler before ours (submitit's requeue, say), now that last.pt is safe
        raise Stopped(stop_message(stop, run_dir), stop_status(stop.signum)) from None
    except KeyboardInterrupt as err:
        sigterm = str(err) == "SIGTERM"
        raise Interrupted(
            interrupted_message(run_dir, signal.SIGTERM if sigterm else None), exit_code=143 if sigterm else 130
        ) from None
    finally:
        if own_reporter:
            reporter.close()
        for logger in loggers:
            logger.close()


def resume_run(
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    ranks: Ranks = SINGLE,
    devices: int | None = None,
    destinations: list[str] | tuple[str, ...] = (),
) -> float:
    """Continue an interrupted run in its own directory, with the config saved in its last checkpoint
    (`checkpoint`: that checkpoint, when the caller has loaded and checked it already), on `devices` ranks
    when given (the weights are plain, so any number of ranks can continue a run), with the command's
    `destinations` overrides (trackers, cache folder: see resume_config)."""
    checkpoint = checkpoint if checkpoint is not None else load_resume_checkpoint(run_dir)
    if ranks.main:
        for stale in RunDir(run_dir).temp_files():
            stale.unlink()  # a temp file of a write that was killed before its rename
    return run(resume_config(checkpoint, devices, destinations), run_dir, resume=checkpoint, ranks=ranks)


def resume_config(
    checkpoint: dict[str, Any], devices: int | None = None, destinations: list[str] | tuple[str, ...] = ()
) -> DictConfig:
    """The validated config a resume continues with: the saved one, with this machine's tracker destinations and
    cache folder (never the checkpoint's) or the command's `destinations` overrides (`logger=...`,
    `mlflow.KEY=...`, `wandb.KEY=...`, `dataset.cache_dir=...`), on `devices` ranks when given."""
    saved = saved_config_data(checkpoint["config"], "the checkpoint's 'config'")
    cfg = OmegaConf.create(with_destinations(saved, destinations) if isinstance(saved, dict) else saved)
    if devices is not None:
        cfg.trainer.devices = devices
    cfg = validate(cfg)
    check_world(checkpoint, cfg.trainer.devices)
    return cfg


def load_resume_checkpoint(run_dir: Path) -> dict[str, Any]:
    """checkpoints/last.pt of run_dir, checked to hold everything a resume needs, each value of the type it needs
    and fitting the model its config builds: the command checks it before Hydra starts the job."""
    if not run_dir.is_dir():
        raise CheckpointError(f"resume={run_dir}: no such run directory")
    path = RunDir(run_dir).last
    checkpoint = load_checkpoint(path)
    check_resume(checkpoint, path)
    return checkpoint


def _precision_note(accel: Accel) -> str:
    """What trainer.precision=auto chose, for the start line (nothing for a precision the config names)."""
    return f"precision {accel.precision} (auto: {accel.chosen}), " if accel.chosen else ""


def fit_settings(cfg: DictConfig, run: RunSetup) -> FitSettings:
    """What the loop runs with: the run's trainer section, the seed, the batch augmentation, and the checkpoint
    metric its task watches."""
    monitor, mode = run.task.monitors(cfg)
    return FitSettings(
        run.trainer, cfg.seed, monitor, mode, augment=build_augment(cfg.dataset.augment, cfg.dataset.num_classes or 0)
    )


def interrupted_message(run_dir: Path, signum: int | None = None) -> str:
    """What to do after Ctrl-C or a signal (`signum`): resume from last.pt, when one was written."""
    paths = RunDir(run_dir)
    how = f"stopped by {signal.Signals(signum).name}" if signum else "interrupted"
    if not paths.last.is_file():
        return f"{how} before the first checkpoint; nothing to resume in {paths.root}"
    try:
        point = f"resumes {resume_point(load_checkpoint(paths.last))}"
    except CheckpointError:
        point = "is the last checkpoint"
    return f"{how}; {paths.last} {point}; continue with: cnntrain resume={paths.root}"


def _run(
    cfg: DictConfig,
    paths: RunDir,
    reporter: Reporter,
    loggers: list[Logger],
    started: float,
    resume: dict[str, Any] | None,
    description: DataDescription | None,
    ranks: Ranks,
    signals: StopSignals,
) -> float:
    state = RunState.read(resume) if resume is not None else None
    run = setup(cfg, description, ranks=ranks, weights=state.model if state else None)
    ranks, trainer = run.ranks, run.trainer
    config = OmegaConf.to_container(cfg, resolve=True)  # as plain data: what checkpoints and trackers record
    if ranks.main:
        loggers.extend(
            open_loggers(
                cfg.logger,
                paths,
                state.history if state else [],
                task=cfg.dataset.get("task"),
                config=config,
                mlflow=section(cfg.mlflow, MLflowConfig),
                wandb=section(cfg.wandb, WandbConfig),
            )
        )
    data = run.data
    where = f"rank {ranks.rank} of {ranks.world} ({ranks.backend}), " if ranks.enabled else ""
    reporter.print(
        f"[bold]cnntrain[/] {markup(cfg.model.name)} on {markup(cfg.dataset.name)}: "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images, {where}"
        f"device {run.device}, {_precision_note(run.accel)}"
        f"{torch.get_num_threads()} CPU threads, run dir {markup(paths.root)}"
    )
    reporter.print(f"data: {markup(data.layout)}")
    if data.skipped:
        if ranks.main:
            write_bad_images(paths.bad_images, data.skipped)
        reporter.print(
            f"[yellow]warning:[/] {len(data.skipped)} image file(s) do not decode and are left out "
            f"(dataset.skip_bad_images=true); the list: {markup(str(paths.bad_images))}"
        )
    model_table = summary_table(run.rows, cfg.model.name, data.input_shape)
    reporter.print(model_table)
    size = model_size(unwrap(run.model), run.rows)  # before the first epoch: what it trains, what it leaves frozen
    if size["params_frozen"]:
        reporter.print(frozen_note(size, trainer.finetune))
    for logger in loggers:
        logger.log_model(model_table)
    if resume:
        reporter.print(f"resuming {resume_point(resume)} from {markup(paths.last)}")
    settings = fit_settings(cfg, run)
    if ranks.main and cfg.report.plots and settings.augment.enabled:
        write_augment_preview(paths.augment_preview, data, settings.augment, trainer.batch_size, cfg.seed)
    train_started = time.perf_counter()
    with reporter.epochs(
        trainer.epochs,
        progress=trainer.progress and ranks.main,
        title="epochs",
        columns=epoch_columns(cfg.dataset.get("task")),
    ) as display:
        result = fit(
            run,
            settings,
            paths,
            display,
            on_epoch=lambda row: [log.log_epoch(row) for log in loggers],
            config=config,
            data=data.description.as_dict(),
            resume=state,
            on_steps=lambda rows: [log.log_steps(rows) for log in loggers],
            signals=signals,
        )
        test_started = time.perf_counter()
        tested = _test_last_and_best(run, paths, result, display)
    timing = {
        "startup_seconds": train_started - started,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds + time.perf_counter() - test_started,
    }
    if ranks.main:
        run.task.write_report(
            cfg,
            paths,
            reporter,
            loggers,
            data,
            size,
            run.device,
            result,
            tested,
            started,
            timing,
            parallel_summary(trainer.batch_size, ranks),
            imbalance_summary(cfg.dataset, run),
            run.rows,
        )
    return float(result.best_value) if result.best_value is not None else float("nan")


def parallel_summary(batch_size: int, ranks: Ranks) -> dict[str, Any]:
    """How the run was spread, for summary.json: trainer.batch_size is the global batch, shared by the ranks
    (per rank: one number, or the smallest and largest share when it does not divide evenly)."""
    share, rest = divmod(batch_size, ranks.world)
    return {
        "world_size": ranks.world,
        "backend": ranks.backend,
        "batch_size": batch_size,
        "batch_size_per_rank": share if rest == 0 else [share, share + 1],
    }


def imbalance_summary(dataset: DictConfig, run: RunSetup) -> dict[str, Any]:
    """How the run met class imbalance, for summary.json: the training split's images per class, the class
    weights its loss was built with (null: unweighted), the sampler, and the cross-validation fold, if any."""
    weight = getattr(run.loss_fn, "weight", getattr(run.loss_fn, "pos_weight", None))
    counts = class_counts(run.data.train.labels, len(run.data.classes))
    folds = dataset.get("folds")
    return {
        "train_class_counts": dict(zip(run.data.classes, counts.tolist())),
        "class_weights": weight.tolist() if weight is not None else None,
        "sampler": run.trainer.sampler,
        "cross_validation": None if folds is None else {"folds": folds, "fold": dataset.fold},
    }


def _test_last_and_best(run: RunSetup, paths: RunDir, result: FitResult, display: Any) -> Tested:
    """The test split with the last epoch's weights, then with the best checkpoint's (left in the model).
    When the last epoch is the best one, its weights are those of best.pt and the first pass is the answer.
    Rank 0 reads best.pt and hands its weights to the other ranks (which may not see its disk)."""
    ranks, trainer = run.ranks, run.trainer
    last, matrix = run.task.test(
        run.model, run.data, run.loss_fn, trainer.eval_batch_size, display, run.accel, trainer.tta, ranks
    )
    names = [row.name for row in run.rows]
    if result.history and result.best_epoch == result.history[-1]["epoch"]:
        return Tested(best=last, last=last, matrix=matrix, model=unwrap(run.model), layer_names=names)
    if ranks.main:
        best_checkpoint = load_checkpoint(paths.best, map_location=run.device)
        unwrap(run.model).load_state_dict(best_checkpoint["model"])
        run.task.restore(best_checkpoint)
    ranks.broadcast_weights(unwrap(run.model))
    if ranks.enabled and run.task.thresholds:  # the other ranks take best.pt's thresholds from rank 0
        run.task.thresholds = ranks.gather_objects(run.task.thresholds)[0]
    best, matrix = run.task.test(
        run.model, run.data, run.loss_fn, trainer.eval_batch_size, display, run.accel, trainer.tta, ranks
    )
    return Tested(best=best, last=last, matrix=matrix, model=unwrap(run.model), layer_names=names)
