"""The training loop: epochs of train (epoch.py: one epoch's steps) + validate, schedules, early stopping,
checkpoints (evaluation.py: the validation and test passes).

It works on tensors already on the device (cnntrain.data) and knows nothing about YAML or Hydra:
cnntrain.training.run hands it the typed trainer section (FitSettings), and every checkpoint it writes is a
RunState (cnntrain.training.run_state). Per-batch loss and accuracy stay on the device; they are read
back once per epoch (and a few times a second for the live display). In a data-parallel run (`Ranks`) each
rank trains on its share of every global batch and evaluates its share of each split; loss and hit counts
are summed over the ranks, so every metric is exact, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cnntrain.config.budgets import parse_duration
from cnntrain.config.schema import TrainerConfig
from cnntrain.data.augment import Augment
from cnntrain.data.batches import num_batches
from cnntrain.reporting.console import EpochDisplay
from cnntrain.reporting.metrics import FitResult
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.epoch import train_epoch
from cnntrain.training.evaluation import unwrap
from cnntrain.training.finetune import freeze_for_epoch
from cnntrain.training.interruptions import StepWatch, StopRequested, StopSignals
from cnntrain.training.progress import EpochProgress, restore_rng_state, rng_state
from cnntrain.training.run_state import MetricWatch, RunState, in_epoch_state
from cnntrain.training.setup import RunSetup
from cnntrain.training.stepping import step_rows


@dataclass
class FitSettings:
    """What fit runs with: the validated trainer section (every default is the schema's), and what the run
    derives beside it: the seed, the batch augmentation and the checkpoint metric the task watches."""

    trainer: TrainerConfig
    seed: int
    checkpoint_monitor: str
    checkpoint_mode: str
    augment: Augment = field(default_factory=Augment)

    @property
    def time_limit(self) -> float | None:
        """trainer.time_limit in seconds (None: no limit)."""
        return parse_duration(self.trainer.time_limit)


def fit(
    run: RunSetup,
    settings: FitSettings,
    paths: RunDir,
    display: EpochDisplay,
    on_epoch: Callable[[dict[str, Any]], None] = lambda row: None,
    *,
    config: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    resume: RunState | None = None,
    on_steps: Callable[[list[dict[str, float]]], None] = lambda rows: None,
    signals: StopSignals | None = None,
) -> FitResult:
    """Train for up to trainer.epochs; write last.pt every epoch (and inside epochs as trainer.checkpoint's
    every_steps / every_minutes ask, or when a stop signal comes) and best.pt on improvement; stop at
    trainer.time_limit.

    Every checkpoint is a RunState; `config` and `data` (the resolved config and the data description) go into
    each. `resume` is a last.pt's state: training continues after its epoch (or its step inside an epoch) with
    every state it saved. `on_epoch` gets each epoch's row, `on_steps` its optimizer steps (rows of STEP_COLUMNS).
    `signals` is the run's StopSignals (installed by the caller): once a signal's last.pt is written, fit raises
    StopRequested.
    """
    return _fit(run, settings, paths, display, on_epoch, config, data, resume, on_steps, signals or StopSignals())


def _fit(
    run: RunSetup,
    settings: FitSettings,
    paths: RunDir,
    display: EpochDisplay,
    on_epoch: Callable[[dict[str, Any]], None],
    config: dict[str, Any] | None,
    data: dict[str, Any] | None,
    resume: RunState | None,
    on_steps: Callable[[list[dict[str, float]]], None],
    signals: StopSignals,
) -> FitResult:
    model, bundle, optimizer, schedule, loss_fn, accel = (
        run.model,
        run.data,
        run.optimizer,
        run.schedule,
        run.loss_fn,
        run.accel,
    )
    ranks, trainer = run.ranks, settings.trainer
    generator = torch.Generator().manual_seed(settings.seed)
    best = MetricWatch(settings.checkpoint_monitor, settings.checkpoint_mode)
    early = MetricWatch(trainer.early_stopping.monitor, trainer.early_stopping.mode, trainer.early_stopping.min_delta)
    result = FitResult()
    first_epoch = 1
    ema = run.stepping.ema
    evaluated = ema.module if ema is not None else model  # validation, best.pt and the test see the average
    resumed = resume.position(ranks.rank, ranks.world) if resume is not None else None
    if resume is not None:
        unwrap(model).load_state_dict(resume.train_weights if ema is not None else resume.model)
        if ema is not None:
            ema.load_state_dict(resume.ema, resume.model)
        optimizer.load_state_dict(resume.optimizer)
        schedule.load_state_dict(resume.scheduler)
        best, early = resume.best, resume.early_stopping
        result.history = [dict(row) for row in resume.history]
        result.train_seconds = sum(row["seconds"] for row in result.history)
        restore_rng_state(resumed[1] if resumed else resume.own_rng(ranks.rank, ranks.world), generator)
        first_epoch = resume.epoch + 1
        result.stopped_early = _should_stop(trainer, early)
    last_epoch = first_epoch - 1 if result.stopped_early else trainer.epochs

    def state_of(epoch: int, row: dict[str, Any] | None) -> RunState:
        return RunState(
            epoch=epoch,
            model=unwrap(evaluated).state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=schedule.state_dict(),
            best=best,
            early_stopping=early,
            rng=rng_state(generator),
            metrics=row,
            history=result.history,
            config=config,
            data=data,
            thresholds=thresholds,
            train_weights=unwrap(model).state_dict() if ema is not None else None,
            ema=ema.state_dict() if ema is not None else None,
        )

    epoch_start: dict[str, Any] = {}
    thresholds = resume.thresholds if resume is not None else None

    def save_inside(progress: EpochProgress) -> None:
        """last.pt at this step of the epoch under way: its position, every rank's random states and sums."""
        mine = {"rng": rng_state(generator), "sums": progress.state_dict()}
        per_rank = ranks.gather_objects(mine)
        if ranks.main:
            state = state_of(epoch_start["epoch"] - 1, result.history[-1] if result.history else None)
            seconds = epoch_start["seconds"] + time.perf_counter() - epoch_start["started"]
            state.in_epoch = in_epoch_state(
                epoch_start["epoch"], epoch_start["order_rng"], epoch_start["lr"], seconds, per_rank
            )
            state.save(paths.last, paths.root)

    spent = result.train_seconds + result.eval_seconds + (resumed[0].seconds if resumed else 0.0)
    watch = StepWatch(
        save_inside,
        signals,
        trainer.checkpoint.every_steps,
        trainer.checkpoint.every_minutes,
        settings.time_limit,
        spent,
        ranks,
    )
    for epoch in range(first_epoch, last_epoch + 1):
        started = time.perf_counter()
        freeze_for_epoch(unwrap(model), trainer.finetune, epoch)
        at = resumed[0] if resumed and resumed[0].epoch == epoch else None
        lr = at.lr if at else optimizer.param_groups[0]["lr"]
        epoch_start.update(
            epoch=epoch,
            lr=lr,
            started=started,
            seconds=at.seconds if at else 0.0,
            order_rng=at.order_rng if at else generator.get_state(),
        )
        train_loss, train_acc, steps = train_epoch(
            run.train_model,
            bundle,
            optimizer,
            schedule,
            loss_fn,
            trainer.batch_size,
            generator,
            epoch,
            display,
            accel=accel,
            augment=settings.augment,
            ranks=ranks,
            stepping=run.stepping,
            sampler=trainer.sampler,
            task=run.task,
            resumed=resumed if at else None,
            watch=watch,
        )
        trained = time.perf_counter()
        val = run.task.evaluate(
            evaluated,
            bundle.val,
            bundle,
            loss_fn,
            trainer.eval_batch_size,
            display=display,
            accel=accel,
            tta=trainer.tta,
            ranks=ranks,
        )
        thresholds = val.thresholds
        result.train_seconds += trained - started + epoch_start["seconds"]
        result.eval_seconds += time.perf_counter() - trained
        row = {
            "epoch": epoch,
            "train/loss": train_loss,
            "train/acc": train_acc,
            "val/loss": val.loss,
            "val/acc": val.acc,
            **val.epoch_metrics,
            "lr": lr,
        }
        schedule.after_epoch(row)
        improved = best.update(row, epoch)
        early.update(row, epoch)
        row["seconds"] = time.perf_counter() - started + epoch_start["seconds"]
        result.history.append(row)
        state = state_of(epoch, row)
        if ranks.enabled:
            state.rng_per_rank = ranks.gather_objects(state.rng)
        per_epoch = run.stepping.steps_per_epoch(num_batches(len(bundle.train), trainer.batch_size, False, ranks.world))
        on_steps(step_rows(steps, epoch, per_epoch))  # before last.pt: a resume drops steps past it, never lacks any
        if improved and ranks.main:  # best.pt first: whenever last.pt says epoch N, best.pt is up to date with N
            state.save(paths.best, paths.root)
        if ranks.main:
            state.save(paths.last, paths.root)
        display.end_epoch(row, best=improved)
        on_epoch(row)
        signum = watch.after_epoch(epoch)
        if signum:
            raise StopRequested(signum, epoch, 0, 0)
        if watch.time_up:
            result.stopped = {
                "reason": "time_limit",
                "limit_seconds": settings.time_limit,
                "trained_seconds": watch.elapsed(),
                "epoch": epoch,
                "steps_in_epoch": len(steps),
                "steps_per_epoch": per_epoch,
            }
            break
        if _should_stop(trainer, early):
            result.stopped_early = True
            break
    result.best_epoch, result.best_value = best.best_epoch, best.best
    if result.stopped_early:
        result.stopped = {
            "reason": "early_stopping",
            "epoch": len(result.history),
            "monitor": trainer.early_stopping.monitor,
            "patience": trainer.early_stopping.patience,
        }
    if ema is not None:  # the last weights a run reports, tests and saves are the average
        unwrap(model).load_state_dict(ema.module.state_dict())
    return result


def _should_stop(trainer: TrainerConfig, early: MetricWatch) -> bool:
    return trainer.early_stopping.enabled and early.bad_epochs >= trainer.early_stopping.patience
