"""How training batches become optimizer steps: gradient accumulation, gradient clipping and the weight average.

With `accumulate: k` the gradients of k batches add up before one optimizer step (each batch's loss divided by
the batches in its step, so the step sees their mean gradient: an effective batch of k x batch_size); the
schedule, the EMA and steps.csv count optimizer steps. A data-parallel run all-reduces once per step
(DDP's no_sync on the other batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    return Stepping(accumulate=trainer.accumulate, clip=trainer.grad_clip,
                    ema=Ema(model, ema.decay, ema.warmup, ema.every) if ema.decay > 0 else None)
