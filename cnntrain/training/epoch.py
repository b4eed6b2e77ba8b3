"""One training epoch: the steps over a shuffled (or balanced) order of batches, augmentation, accumulation,
the live display, checkpoints inside the epoch, and the check that the loss stays finite.

cnntrain.training.loop runs the epochs around it (validation, early stopping, epoch-end checkpoints). Per-batch
loss and accuracy stay on the device and are read back once per epoch (and a few times a second for the
display); in a data-parallel run each rank trains on its share of every global batch.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from cnntrain.data.augment import Augment
from cnntrain.data.batches import batch_share, global_batch_size, num_batches
from cnntrain.data.containers import iterate_batches
from cnntrain.data.loading import DataBundle
from cnntrain.errors import UserError
from cnntrain.reporting.console import EpochDisplay
from cnntrain.training.accel import Accel
from cnntrain.training.distributed import SINGLE, Ranks
from cnntrain.training.evaluation import default_accel, forward, unwrap
from cnntrain.training.interruptions import StepWatch
from cnntrain.training.optim import LRSchedule
from cnntrain.training.progress import EpochProgress, Position, resumed_batches
from cnntrain.training.stepping import Stepping, images_in_step
from cnntrain.training.tasks import SINGLE_LABEL, Task

DIVERGENCE_CHECK_EVERY = 50  # batches between NaN/inf checks on an accelerator (each check syncs)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: usually a learning rate that is too high."""


def train_epoch(
    model: nn.Module,
    bundle: DataBundle,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    loss_fn: nn.Module,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    display: EpochDisplay,
    *,
    accel: Accel | None = None,
    augment: Augment = Augment(),
    ranks: Ranks = SINGLE,
    stepping: Stepping = Stepping(),
    sampler: str = "shuffle",
    task: Task = SINGLE_LABEL,
    resumed: tuple[Position, dict[str, Any]] | None = None,
    watch: StepWatch | None = None,
) -> tuple[float, float, list[tuple[float, float]]]:
    """One pass over the shuffled (and optionally augmented) training split; returns the mean loss, the
    accuracy and, per optimizer step, (its global batch's loss, the learning rate it used). The step losses stay
    on the device until the epoch ends: recording them adds no sync to the loop.

    `model` is the module that trains (DistributedDataParallel in a data-parallel run). A rank whose share of
    a global batch is not 1/world of it scales its loss so that the averaged gradient is the global batch's
    mean, as one process would compute it. `resumed`: the position and random states of a checkpoint inside this
    epoch, to continue from; `watch` is asked after every optimizer step whether to save, stop or end the epoch
    (see cnntrain.training.interruptions).

    Raises TrainingDiverged naming the first batch whose loss was not finite. Each batch's loss is kept
    on the device; the running total is checked every batch on the CPU (free) and every
    DIVERGENCE_CHECK_EVERY batches elsewhere (each check is a device sync), then the bad batch is found.
    """
    accel = accel or default_accel(bundle.train)
    model.train()
    split = bundle.train
    device = split.labels.device
    batches = num_batches(len(split), batch_size, False, ranks.world)
    at, rng = resumed if resumed is not None else (None, None)
    p = EpochProgress.from_state(at.sums, batches, device) if at is not None else EpochProgress(batches, device)
    check_every = divergence_check_every(device)
    display.start_phase(f"epoch {epoch}", batches)
    shares = resumed_batches(
        lambda start: iterate_batches(
            split,
            batch_size,
            shuffle=True,
            generator=generator,
            rank=ranks.rank,
            world=ranks.world,
            sampler=sampler,
            start=start,
        ),
        generator,
        at,
        rng,
    )
    every = stepping.accumulate
    steps_per_epoch = stepping.steps_per_epoch(batches)
    for step, (images, labels) in enumerate(shares, p.step + 1):
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
        p.lrs.append(optimizer.param_groups[0]["lr"])
        p.sizes[step - 1], p.counts[step - 1] = size, count
        with contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            accel.backward(loss if scale == 1 else loss * scale)
        if last:
            accel.step(optimizer, stepping.clip)
            schedule.after_batch()
            if stepping.ema is not None:
                stepping.ema.after_step(unwrap(model))
        p.losses[step - 1] = loss.detach()
        p.total += p.losses[step - 1] * count
        p.hits += task.hits(logits, targets)
        p.seen += count
        p.step = step
        if step % check_every == 0 or step == batches:
            _check_finite(p.total, p.losses[:step], epoch, batches, optimizer)
        # the display calls this at once (a few times a second), so it reads this batch's running totals
        display.advance(step, lambda: f"loss {p.total.item() / p.seen:.4f}  acc {100 * p.hits.item() / p.seen:.2f}%")
        global_step = (epoch - 1) * steps_per_epoch + (step - 1) // every + 1
        if last and watch is not None and watch.after_step(p, epoch, global_step, step == batches):
            break  # the time budget is spent: the epoch ends here
    done = p.step
    total_sum, hit_sum, seen_sum = ranks.sum([p.total, p.hits, p.seen], device)
    weighted = ranks.sum_tensor(p.losses[:done] * p.counts[:done].to(device))
    step_losses = (weighted.cpu() / p.sizes[:done].clamp(min=1)).tolist()
    lrs = p.lrs
    if every > 1:  # one row per optimizer step: its batches' loss over all their images, and its rate
        sizes = p.sizes[:done]
        step_losses = [
            sum(loss * n for loss, n in zip(step_losses[i : i + every], sizes[i : i + every].tolist()))
            / max(1.0, float(sizes[i : i + every].sum()))
            for i in range(0, done, every)
        ]
        lrs = lrs[::every]
    return total_sum / max(1, seen_sum), hit_sum / max(1, seen_sum), list(zip(step_losses, lrs))


def divergence_check_every(device: torch.device) -> int:
    """Batches between NaN/inf checks: every batch on the CPU, where reading a value back costs nothing."""
    return 1 if device.type == "cpu" else DIVERGENCE_CHECK_EVERY


def _check_finite(
    total: torch.Tensor, losses: torch.Tensor, epoch: int, batches: int, optimizer: torch.optim.Optimizer
) -> None:
    if bool(torch.isfinite(total)):
        return
    bad = int((~torch.isfinite(losses)).nonzero()[0])
    raise TrainingDiverged(
        f"training loss became {losses[bad].item()} in epoch {epoch}, batch {bad + 1} of {batches}; lower "
        f"optimizer.lr (now {optimizer.param_groups[0]['lr']:.3g}) or add a scheduler"
    )
