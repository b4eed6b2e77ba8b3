"""Optimizers and learning-rate schedules, constructed from their declaration (cnntrain.config.optimizers).

The config's arguments go to the declared torch class as they are; only the run's size (a OneCycle's
steps), the default max_lr and the warm-up cosine are added here. The engine only calls
`LRSchedule.after_batch()` / `after_epoch(metrics)`: whether a schedule steps per batch, per epoch or on
a monitored metric comes from the declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnntrain.config.optimizers import OPTIMIZERS, SCHEDULERS, Declared
from cnntrain.errors import ConfigError
from cnntrain.training.finetune import backbone_parameters


def build_optimizer(params: Any, cfg: DictConfig) -> torch.optim.Optimizer:
    """The torch optimizer named by cfg.name, with the config's hyper-parameters."""
    declared = OPTIMIZERS[cfg.name]
    return getattr(torch.optim, str(declared.torch_class))(params, **torch_arguments(declared, cfg))


def parameter_groups(model: nn.Module, trainer: Any, optimizer: Any) -> list[dict[str, Any]]:
    """The optimizer's parameter groups. One group (the model's parameters in order) unless asked otherwise:
    trainer.finetune.backbone_lr puts a pretrained backbone in its own group at that multiple of the rate, and
    trainer.decay_norm_and_bias=false puts biases and normalisation weights (every parameter of one dimension,
    timm's rule) in a group without weight decay. The first group is the head's, decayed: the rate logged."""
    finetune = trainer.finetune
    backbone = {id(p) for p in backbone_parameters(model)}
    if not backbone and (finetune.freeze_epochs or finetune.head_only or finetune.backbone_lr != 1.0):
        raise ConfigError(
            "trainer.finetune needs a model with a pretrained backbone (a torchvision or timm layer); "
            "this model has none: leave trainer.finetune at its defaults"
        )
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        slower = id(param) in backbone and finetune.backbone_lr != 1.0
        undecayed = not trainer.decay_norm_and_bias and param.ndim <= 1
        groups.setdefault((slower, undecayed), []).append(param)
    built = []
    for (slower, undecayed), params in sorted(groups.items(), key=lambda item: item[0]):
        group: dict[str, Any] = {"params": params}
        if slower:
            group["lr"] = optimizer.lr * finetune.backbone_lr
        if undecayed:
            group["weight_decay"] = 0.0
        built.append(group)
    return built


def build_schedule(opt: torch.optim.Optimizer, cfg: DictConfig, epochs: int, steps_per_epoch: int) -> LRSchedule:
    """The schedule named by cfg.name, sized to the whole run (epochs x steps per epoch)."""
    declared = SCHEDULERS[cfg.name]
    kwargs = torch_arguments(declared, cfg)
    base_lr = opt.param_groups[0]["lr"]
    if cfg.name == "cosine":
        shape = WarmupCosine(
            round(cfg.warmup_epochs * steps_per_epoch), epochs * steps_per_epoch, cfg.eta_min / base_lr
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, shape)
    elif declared.torch_class is None:
        scheduler = None
    else:
        if cfg.name == "onecycle":
            kwargs.update(epochs=epochs, steps_per_epoch=steps_per_epoch)
            peak = base_lr if kwargs["max_lr"] is None else kwargs["max_lr"]
            kwargs["max_lr"] = [peak * group["lr"] / base_lr for group in opt.param_groups]  # groups keep their ratio
        scheduler = getattr(torch.optim.lr_scheduler, declared.torch_class)(opt, **kwargs)
    return LRSchedule(scheduler, declared.interval, cfg.get("monitor"))


def torch_arguments(declared: Declared, cfg: DictConfig) -> dict[str, Any]:
    """The config's values of the arguments torch takes (lists become tuples, as torch expects)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return {
        key: tuple(values[key]) if isinstance(values[key], list) else values[key]
        for key, arg in declared.args.items()
        if arg.to_torch
    }


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
