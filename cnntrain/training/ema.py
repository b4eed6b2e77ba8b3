"""An exponential moving average of the weights (EMA), on torch's AveragedModel.

The average is what validation, the test, best.pt and every export see; the raw weights keep training.
The decay warms up as timm's ModelEmaV3 does, min(decay, (1 + n) / (10 + n)) after n updates, so the early
average is not dominated by the random initial weights. Buffers (BatchNorm statistics) are averaged too,
integer ones (batch counters) copied. The update count is kept on the host: updating costs no device sync.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class Ema:
    """The averaged copy of a model, updated every `every` optimizer steps."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True, every: int = 1) -> None:
        self.decay, self.warmup, self.every = decay, warmup, every
        self.updates = 0
        self.steps = 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def after_step(self, model: nn.Module) -> None:
        """Count an optimizer step of `model` (the unwrapped training model); average on every `every`-th."""
        self.steps += 1
        if self.steps % self.every == 0:
            self.averaged.update_parameters(model)
            self.updates += 1

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint: its averaged weights and counters."""
        self.module.load_state_dict(weights)
        self.updates, self.steps = int(state["updates"]), int(state["steps"])
        self.averaged.n_averaged.fill_(self.updates)

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _: torch.Tensor) -> None:
        decay = self.current_decay()  # self.updates counts the updates before this one
        with torch.no_grad():
            if torch.is_floating_point(averaged[0]):
                torch._foreach_lerp_(averaged, current, 1 - decay)
            else:
                for mine, theirs in zip(averaged, current):
                    mine.copy_(theirs)
