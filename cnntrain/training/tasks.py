"""The task a run learns, chosen once from the data's description: one class per image (SingleLabel) or a set
of labels per image (MultiLabel, cnntrain.training.multi_label).

A task owns the loss, the shape of the targets, the prediction rule and the metrics; the loop, the run and the
saved-run commands ask it and never which kind they have.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from cnntrain.config.names import VAL_MAP
from cnntrain.data.augment import dominant_class
from cnntrain.data.loading import DataBundle
from cnntrain.training import evaluation
from cnntrain.training.multi_label import MultiLabel


class Task(Protocol):
    name: str
    thresholds: list[float]

    def check_config(self, cfg: DictConfig) -> None: ...
    def loss(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> nn.Module: ...
    def monitors(self, cfg: DictConfig) -> tuple[str, str]: ...
    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...
    def evaluate(self, *args: Any, **kwargs: Any) -> Any: ...
    def test(self, *args: Any, **kwargs: Any) -> Any: ...
    def restore(self, checkpoint: dict[str, Any]) -> None: ...


class SingleLabel:
    """One class per image: softmax cross-entropy (or NLL), argmax predictions, accuracy and the confusion matrix."""

    name = "single"
    thresholds: list[float] = []

    def check_config(self, cfg: DictConfig) -> None:
        from cnntrain.training.setup import make_loss

        make_loss(cfg)
        self.monitors(cfg)

    def loss(self, cfg: DictConfig, data: DataBundle, device: torch.device) -> nn.Module:
        from cnntrain.data.balance import train_class_weights
        from cnntrain.training.setup import make_loss

        return make_loss(cfg, train_class_weights(cfg.trainer, data.train.labels, data.classes), device)

    def monitors(self, cfg: DictConfig) -> tuple[str, str]:
        from cnntrain.errors import ConfigError

        watched = (cfg.trainer.checkpoint.monitor, cfg.trainer.early_stopping.monitor, cfg.scheduler.get("monitor"))
        if VAL_MAP in watched:
            raise ConfigError(f"val/map is measured in multi-label runs only, and dataset {cfg.dataset.name} gives "
                              f"one class per image: monitor val/acc or val/loss")
        return cfg.trainer.checkpoint.monitor, cfg.trainer.checkpoint.mode

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(dim=1) == dominant_class(targets)).sum()

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        return evaluation.evaluate(*args, **kwargs)

    def test(self, *args: Any, **kwargs: Any) -> Any:
        return evaluation.test(*args, **kwargs)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Nothing beyond the weights."""


SINGLE_LABEL = SingleLabel()


def task_for(task: str | None, cfg: DictConfig | None = None, num_classes: int = 0) -> Task:
    """The task of a dataset.task value (null and single: one class per image); a multi-label task takes
    trainer.threshold from `cfg`."""
    if task == "multilabel":
        threshold = cfg.trainer.get("threshold", 0.5) if cfg is not None else 0.5
        return MultiLabel(threshold, num_classes)
    return SINGLE_LABEL
