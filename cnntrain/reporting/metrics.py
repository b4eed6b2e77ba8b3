"""What a run measures: classification metrics computed from predictions (kept on the device until the
end), and the results of fitting and of one evaluation pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    stopped_early: bool = False
    train_seconds: float = 0.0  # the training loops alone: forward, backward, optimizer steps
    eval_seconds: float = 0.0   # validation passes


@dataclass
class EvalResult:
    loss: float
    acc: float
    preds: torch.Tensor | None = None


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [true class, predicted class] as int64 on the inputs' device."""
    flat = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Recall of each class (None for a class absent from the labels)."""
    totals = matrix.sum(dim=1).tolist()
    hits = matrix.diagonal().tolist()
    return [h / t if t else None for h, t in zip(hits, totals)]
