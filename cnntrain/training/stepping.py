"""How training batches become optimizer steps: gradient accumulation, gradient clipping and the weight average.

With `accumulate: k` the gradients of k batches add up before one optimizer step (each batch's loss divided by
the batches in its step, so the step sees their mean gradient: an effective batch of k x batch_size); the
schedule, the EMA and steps.csv count optimizer steps. A data-parallel run all-reduces once per step
(DDP's no_sync on the other batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnntrain.config.names import STEP_LOSS
from cnntrain.data.batches import global_batch_size
from cnntrain.training.ema import Ema


@dataclass
class Stepping:
    accumulate: int = 1  # batches per optimizer step
    clip: float | None = None  # max global gradient norm (None: no clipping)
    ema: Ema | None = None

    def steps_per_epoch(self, batches: int) -> int:
        """Optimizer steps in an epoch of `batches` batches (the last step may gather fewer)."""
        return -(-batches // self.accumulate)


def stepping_from(trainer: Any, model: Any) -> Stepping:
    """The stepping a trainer config asks for; the EMA starts from `model`'s current weights."""
    ema = trainer.ema
    return Stepping(
        accumulate=trainer.accumulate,
        clip=trainer.grad_clip,
        ema=Ema(model, ema.decay, ema.warmup, ema.every) if ema.decay > 0 else None,
    )


def images_in_step(n: int, batch_size: int, step: int, every: int, batches: int) -> int:
    """Images in the optimizer step that batch number `step` (from 1) belongs to, `every` batches a step: each
    batch's mean loss is weighted by its share of them, so the step follows the mean gradient of its images."""
    first = (step - 1) // every * every + 1
    return sum(global_batch_size(n, batch_size, s) for s in range(first, min(first + every, batches + 1)))


def step_rows(steps: list[tuple[float, float]], epoch: int, per_epoch: int | None = None) -> list[dict[str, float]]:
    """An epoch's (loss, lr) per step as rows of STEP_COLUMNS: the global step counts every epoch's steps
    (`per_epoch` of them, by default as many as this one's), the fractional epoch is where the step ends."""
    count = per_epoch or len(steps)
    return [
        {"step": (epoch - 1) * count + i, "epoch": epoch - 1 + i / count, STEP_LOSS: loss, "lr": lr}
        for i, (loss, lr) in enumerate(steps, 1)
    ]
