"""What a run measures: classification metrics computed from predictions (kept on the device until the
end), and the results of fitting and of one evaluation pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cnntrain.config.names import TEST_ACC5, TEST_BALANCED_ACC, TEST_MACRO_F1
from cnntrain.reporting.analysis import Predictions


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float | None = None
    stopped_early: bool = False
    stopped: dict[str, Any] = field(default_factory=lambda: {"reason": "finished"})  # why training ended
    train_seconds: float = 0.0  # the training loops alone: forward, backward, optimizer steps
    eval_seconds: float = 0.0  # validation passes


@dataclass
class EvalResult:
    loss: float
    acc: float
    preds: torch.Tensor | None = None
    acc5: float | None = None  # top-5 accuracy, measured on the test split of data with TOP5_MIN_CLASSES+ classes
    labels: torch.Tensor | None = None  # with preds: the label of each prediction (gathered with it)
    table: Predictions | None = None  # per image of a test pass: the analysis's table (reporting.analysis)
    epoch_metrics: dict[str, float] = field(default_factory=dict)  # a task's own per-epoch metrics (val/map)
    thresholds: list[float] | None = None  # multi-label: each label's decision threshold (saved with the weights)
    scores: torch.Tensor | None = None  # multi-label test pass: every image's sigmoid scores [N, K] (CPU)


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [true class, predicted class] as int64 on the inputs' device."""
    flat = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Recall of each class (None for a class absent from the labels)."""
    totals = matrix.sum(dim=1).tolist()
    hits = matrix.diagonal().tolist()
    return [h / t if t else None for h, t in zip(hits, totals)]


def balanced_accuracy(matrix: torch.Tensor) -> float | None:
    """Mean recall over the classes present in the labels (as sklearn's balanced_accuracy_score): a model that
    always answers the largest class scores 1 / classes, not that class's share."""
    recalls = [r for r in per_class_accuracy(matrix) if r is not None]
    return sum(recalls) / len(recalls) if recalls else None


def macro_f1(matrix: torch.Tensor) -> float | None:
    """Unweighted mean F1 = 2TP / (2TP + FP + FN) over the classes that occur in the labels or the predictions
    (as sklearn's f1_score(average="macro"); a class never predicted counts 0)."""
    m = matrix.double().cpu()
    tp = m.diagonal()
    denominators = m.sum(dim=0) + m.sum(dim=1)  # (TP + FP) + (TP + FN)
    seen = denominators > 0
    return float((2 * tp[seen] / denominators[seen]).mean()) if bool(seen.any()) else None


def top_k_hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many of the batch's labels are among their row's k highest scores (on the device)."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).sum()


def class_metrics(matrix: torch.Tensor, acc5: float | None) -> dict[str, float | None]:
    """The test metrics beside accuracy and loss, by their names (CLASS_METRICS); acc5 only where measured."""
    values = {TEST_BALANCED_ACC: balanced_accuracy(matrix), TEST_MACRO_F1: macro_f1(matrix)}
    if acc5 is not None:
        values[TEST_ACC5] = acc5
    return values
