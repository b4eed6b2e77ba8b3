"""The training loop: epochs of train + validate, schedules, early stopping, checkpoints (evaluation.py: the
validation and test passes).

It works on tensors already on the device (cnntrain.data) and knows nothing about YAML or Hydra:
cnntrain.training.run hands it plain settings. Per-batch loss and accuracy stay on the device; they are read
back once per epoch (and a few times a second for the live display). In a data-parallel run (`Ranks`) each
rank trains on its share of every global batch and evaluates its share of each split; loss and hit counts
are summed over the ranks, so every metric is exact, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnntrain.data.augment import Augment
from cnntrain.data.batches import batch_share, global_batch_size, iterate_batches, num_batches
from cnntrain.data.loading import DataBundle
from cnntrain.errors import UserError
from cnntrain.reporting.console import EpochDisplay
from cnntrain.reporting.metrics import FitResult
from cnntrain.training.accel import Accel
from cnntrain.training.checkpoints import save_checkpoint
from cnntrain.training.distributed import SINGLE, Ranks
from cnntrain.training.evaluation import default_accel, forward, unwrap
from cnntrain.training.finetune import freeze_for_epoch
from cnntrain.training.optim import LRSchedule
from cnntrain.training.stepping import Stepping, images_in_step, step_rows
from cnntrain.training.tasks import SINGLE_LABEL, Task

if TYPE_CHECKING:
    from cnntrain.reporting.run_dir import RunDir
    from cnntrain.training.setup import RunSetup


DIVERGENCE_CHECK_EVERY = 50  # batches between NaN/inf checks on an accelerator (each check syncs)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: usually a learning rate that is too high."""


@dataclass
class MetricWatch:
    """Tracks the best value of one metric; serves both early stopping and the best checkpoint."""

    monitor: str
    mode: str
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Record this epoch's value; True when it is an improvement (by more than min_delta)."""
        value = metrics[self.monitor]
        if self.best is None:
            improved = math.isfinite(value)
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved


@dataclass
class FitSettings:
    epochs: int
    batch_size: int
    eval_batch_size: int
    seed: int
    checkpoint_monitor: str = "val/acc"
    checkpoint_mode: str = "max"
    early_stopping: bool = True
    early_monitor: str = "val/loss"
    early_mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0
    augment: Augment = field(default_factory=Augment)
    tta: str = "none"
    finetune: Any = None  # trainer.finetune: which epochs train the backbone (None: every epoch)
    sampler: str = "shuffle"  # trainer.sampler: how each epoch's order is drawn (see batches.epoch_order)


def train_epoch(model: nn.Module, bundle: DataBundle, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                loss_fn: nn.Module, batch_size: int, generator: torch.Generator, epoch: int,
                display: EpochDisplay, *, accel: Accel | None = None, augment: Augment = Augment(),
                ranks: Ranks = SINGLE, stepping: Stepping = Stepping(), sampler: str = "shuffle",
                task: Task = SINGLE_LABEL) -> tuple[float, float, list[tuple[float, float]]]:
    """One pass over the shuffled (and optionally augmented) training split; returns the mean loss, the
    accuracy and, per optimizer step, (its global batch's loss, the learning rate it used). The step losses stay
    on the device until the epoch ends: recording them adds no sync to the loop.

    `model` is the module that trains (DistributedDataParallel in a data-parallel run). A rank whose share of
    a global batch is not 1/world of it scales its loss so that the averaged gradient is the global batch's
    mean, as one process would compute it.

    Raises TrainingDiverged naming the first batch whose loss was not finite. Each batch's loss is kept
    on the device; the running total is checked every batch on the CPU (free) and every
    DIVERGENCE_CHECK_EVERY batches elsewhere (each check is a device sync), then the bad batch is found.
    """
    accel = accel or default_accel(bundle.train)
    model.train()
    split = bundle.train
    device = split.labels.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.int64, device=device)
    batches = num_batches(len(split), batch_size, False, ranks.world)
    losses = torch.zeros(batches, dtype=torch.float64, device=device)
    sizes = torch.zeros(batches, dtype=torch.float64)  # each global batch's images
    counts = torch.zeros(batches, dtype=torch.float64)  # this rank's share of them
    lrs: list[float] = []
    check_every = divergence_check_every(device)
    seen = 0
    display.start_phase(f"epoch {epoch}", batches)
    shares = iterate_batches(split, batch_size, shuffle=True, generator=generator, rank=ranks.rank, world=ranks.world,
                             sampler=sampler)
    every = stepping.accumulate
    for step, (images, labels) in enumerate(shares, 1):
        size = global_batch_size(len(split), batch_size, step)
        targets = labels  # class indices, or class probabilities when the augmentation mixes images
        if augment.enabled:
            images, targets = augment(images, labels, generator, size, batch_share(size, ranks.rank, ranks.world)[0])
        loss, logits = forward(model, loss_fn, images, targets, bundle, accel)
        first, last = (step - 1) % every == 0, step % every == 0 or step == batches
        if first:
            optimizer.zero_grad(set_to_none=True)
        count = labels.shape[0]  # images in this rank's share (multi-label targets have a row each)
        scale = count * ranks.world / images_in_step(len(split), batch_size, step, every, batches)
        lrs.append(optimizer.param_groups[0]["lr"])
        sizes[step - 1], counts[step - 1] = size, count
        with contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            accel.backward(loss if scale == 1 else loss * scale)
        if last:
            accel.step(optimizer, stepping.clip)
            schedule.after_batch()
            if stepping.ema is not None:
                stepping.ema.after_step(unwrap(model))
        losses[step - 1] = loss.detach()
        total += losses[step - 1] * count
        hits += task.hits(logits, targets)
        seen += count
        if step % check_every == 0 or step == batches:
            _check_finite(total, losses[:step], epoch, batches, optimizer)
        # the display calls this at once (a few times a second), so it reads this batch's running totals
        display.advance(step, lambda: f"loss {total.item() / seen:.4f}  acc {100 * hits.item() / seen:.2f}%")  # noqa: B023
    total_sum, hit_sum, seen_sum = ranks.sum([total, hits, seen], device)
    weighted = ranks.sum_tensor(losses * counts.to(device))
    step_losses = (weighted.cpu() / sizes.clamp(min=1)).tolist()
    if every > 1:  # one row per optimizer step: its batches' loss over all their images, and its rate
        step_losses = [sum(loss * n for loss, n in zip(step_losses[i:i + every], sizes[i:i + every].tolist()))
                       / max(1.0, float(sizes[i:i + every].sum())) for i in range(0, batches, every)]
        lrs = lrs[::every]
    return total_sum / max(1, seen_sum), hit_sum / max(1, seen_sum), list(zip(step_losses, lrs))



def divergence_check_every(device: torch.device) -> int:
    """Batches between NaN/inf checks: every batch on the CPU, where reading a value back costs nothing."""
    return 1 if device.type == "cpu" else DIVERGENCE_CHECK_EVERY


def _check_finite(total: torch.Tensor, losses: torch.Tensor, epoch: int, batches: int,
                  optimizer: torch.optim.Optimizer) -> None:
    if bool(torch.isfinite(total)):
        return
    bad = int((~torch.isfinite(losses)).nonzero()[0])
    raise TrainingDiverged(
        f"training loss became {losses[bad].item()} in epoch {epoch}, batch {bad + 1} of {batches}; lower "
        f"optimizer.lr (now {optimizer.param_groups[0]['lr']:.3g}) or add a scheduler")


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to continue exactly."""
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what rng_state saved, so the next shuffle and the next dropout mask are the same."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(run: RunSetup, settings: FitSettings, paths: RunDir, display: EpochDisplay,
        on_epoch: Callable[[dict[str, Any]], None] = lambda row: None,
        checkpoint_extra: dict[str, Any] | None = None, resume: dict[str, Any] | None = None,
        on_steps: Callable[[list[dict[str, float]]], None] = lambda rows: None) -> FitResult:
    """Train for up to settings.epochs; write last.pt every epoch and best.pt on improvement.

    `resume` is a last.pt payload: training continues after its epoch with every state it saved. `on_epoch`
    gets each epoch's row, `on_steps` its optimizer steps (rows of STEP_COLUMNS).
    """
    model, bundle, optimizer, schedule, loss_fn, accel = (run.model, run.data, run.optimizer, run.schedule,
                                                          run.loss_fn, run.accel)
    ranks = run.ranks
    generator = torch.Generator().manual_seed(settings.seed)
    best = MetricWatch(settings.checkpoint_monitor, settings.checkpoint_mode)
    early = MetricWatch(settings.early_monitor, settings.early_mode, settings.min_delta)
    result = FitResult()
    first_epoch = 1
    ema = run.stepping.ema
    evaluated = ema.module if ema is not None else model  # validation, best.pt and the test see the average
    if resume is not None:
        unwrap(model).load_state_dict(resume["train_weights"] if ema is not None else resume["model"])
        if ema is not None:
            ema.load_state_dict(resume["ema"], resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        best, early = MetricWatch(**resume["best"]), MetricWatch(**resume["early_stopping"])
        result.history = [dict(row) for row in resume["history"]]
        result.train_seconds = sum(row["seconds"] for row in result.history)
        restore_rng_state(_own_rng(resume, ranks), generator)
        first_epoch = resume["epoch"] + 1
        result.stopped_early = _should_stop(settings, early)
    last_epoch = first_epoch - 1 if result.stopped_early else settings.epochs
    for epoch in range(first_epoch, last_epoch + 1):
        started = time.perf_counter()
        if settings.finetune is not None:
            freeze_for_epoch(unwrap(model), settings.finetune, epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc, steps = train_epoch(run.train_model, bundle, optimizer, schedule, loss_fn,
                                                   settings.batch_size, generator, epoch, display, accel=accel,
                                                   augment=settings.augment, ranks=ranks, stepping=run.stepping,
                                                   sampler=settings.sampler, task=run.task)
        trained = time.perf_counter()
        val = run.task.evaluate(evaluated, bundle.val, bundle, loss_fn, settings.eval_batch_size, display=display,
                                accel=accel, tta=settings.tta, ranks=ranks)
        result.train_seconds += trained - started
        result.eval_seconds += time.perf_counter() - trained
        row = {"epoch": epoch, "train/loss": train_loss, "train/acc": train_acc, "val/loss": val.loss,
               "val/acc": val.acc, **val.epoch_metrics, "lr": lr}
        schedule.after_epoch(row)
        improved = best.update(row, epoch)
        early.update(row, epoch)
        row["seconds"] = time.perf_counter() - started
        result.history.append(row)
        state = {
            "epoch": epoch, "model": unwrap(evaluated).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(), "best": asdict(best), "early_stopping": asdict(early),
            "rng": rng_state(generator), "metrics": row, "history": result.history, **(checkpoint_extra or {}),
        }
        if val.thresholds is not None:  # multi-label: the decision thresholds these weights are tested with
            state["thresholds"] = val.thresholds
        if ema is not None:  # "model" holds the average (what eval and export read); training goes on from these
            state["train_weights"], state["ema"] = unwrap(model).state_dict(), ema.state_dict()
        if ranks.enabled:
            state["rng_per_rank"] = ranks.gather_objects(state["rng"])
        on_steps(step_rows(steps, epoch))  # before last.pt: a resume drops steps past it, and never lacks any
        if improved and ranks.main:  # best.pt first: whenever last.pt says epoch N, best.pt is up to date with N
            save_checkpoint(paths.best, state, root=paths.root)
        if ranks.main:
            save_checkpoint(paths.last, state, root=paths.root)
        display.end_epoch(row, best=improved)
        on_epoch(row)
        if _should_stop(settings, early):
            result.stopped_early = True
            break
    result.best_epoch, result.best_value = best.best_epoch, best.best
    if ema is not None:  # the last weights a run reports, tests and saves are the average
        unwrap(model).load_state_dict(ema.module.state_dict())
    return result



def _own_rng(checkpoint: dict[str, Any], ranks: Ranks) -> dict[str, Any]:
    """This rank's saved random states when the checkpoint was written by as many ranks; otherwise rank 0's
    (the shuffle is the same on every rank; only dropout masks start from rank 0's state)."""
    per_rank = checkpoint.get("rng_per_rank")
    if isinstance(per_rank, list) and len(per_rank) == ranks.world:
        return per_rank[ranks.rank]
    return checkpoint["rng"]


def _should_stop(settings: FitSettings, early: MetricWatch) -> bool:
    return settings.early_stopping and early.bad_epochs >= settings.patience
