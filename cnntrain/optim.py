"""Optimizers and learning-rate schedules, built from their config groups by name.

Each builder is one entry in a dict, so adding an optimizer or schedule is one function and one line.
The engine only calls `LRSchedule.after_batch()` / `after_epoch(metrics)`: whether a schedule steps per
batch, per epoch or on a monitored metric is decided here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from omegaconf import DictConfig

OptimizerBuilder = Callable[[Any, DictConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "adam": lambda params, c: torch.optim.Adam(
        params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay, amsgrad=c.amsgrad),
    "adamw": lambda params, c: torch.optim.AdamW(
        params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay, amsgrad=c.amsgrad),
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, dampening=c.dampening,
        weight_decay=c.weight_decay),
    "rmsprop": lambda params, c: torch.optim.RMSprop(
        params, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, centered=c.centered,
        weight_decay=c.weight_decay),
}


def build_optimizer(params: Any, cfg: DictConfig) -> torch.optim.Optimizer:
    """The torch optimizer named by cfg.name, with the config's hyper-parameters."""
    return OPTIMIZERS[cfg.name](params, cfg)


class WarmupCosine:
    """lr multiplier: linear warm-up, then half a cosine down to eta_min (a plain object, so it checkpoints)."""

    def __init__(self, warmup_steps: int, total_steps: int, floor: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.floor = floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LRSchedule:
    """A torch scheduler plus when to step it: 'batch', 'epoch' or 'metric' (plateau)."""

    scheduler: Any
    interval: str
    monitor: str | None = None

    def after_batch(self) -> None:
        if self.interval == "batch":
            self.scheduler.step()

    def after_epoch(self, metrics: dict[str, float]) -> None:
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "metric":
            self.scheduler.step(metrics[self.monitor])

    def state_dict(self) -> dict[str, Any] | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scheduler is not None and state is not None:
            self.scheduler.load_state_dict(state)


def _plateau(opt: torch.optim.Optimizer, c: DictConfig, epochs: int, steps: int) -> LRSchedule:
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=c.mode, factor=c.factor, patience=c.patience, threshold=c.threshold, min_lr=c.min_lr)
    return LRSchedule(sched, "metric", c.monitor)


def _step(opt: torch.optim.Optimizer, c: DictConfig, epochs: int, steps: int) -> LRSchedule:
    return LRSchedule(torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma), "epoch")


def _cosine(opt: torch.optim.Optimizer, c: DictConfig, epochs: int, steps: int) -> LRSchedule:
    base_lr = opt.param_groups[0]["lr"]
    schedule = WarmupCosine(round(c.warmup_epochs * steps), epochs * steps, c.eta_min / base_lr)
    return LRSchedule(torch.optim.lr_scheduler.LambdaLR(opt, schedule), "batch")


def _onecycle(opt: torch.optim.Optimizer, c: DictConfig, epochs: int, steps: int) -> LRSchedule:
    max_lr = c.max_lr if c.max_lr is not None else opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps, pct_start=c.pct_start,
        div_factor=c.div_factor, final_div_factor=c.final_div_factor, anneal_strategy=c.anneal_strategy,
        three_phase=c.three_phase)
    return LRSchedule(sched, "batch")


SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, DictConfig, int, int], LRSchedule]] = {
    "none": lambda opt, c, epochs, steps: LRSchedule(None, "none"),
    "plateau": _plateau,
    "step": _step,
    "cosine": _cosine,
    "onecycle": _onecycle,
}


def build_schedule(opt: torch.optim.Optimizer, cfg: DictConfig, epochs: int, steps_per_epoch: int) -> LRSchedule:
    """The schedule named by cfg.name, sized to the whole run (epochs x steps per epoch)."""
    return SCHEDULERS[cfg.name](opt, cfg, epochs, steps_per_epoch)
