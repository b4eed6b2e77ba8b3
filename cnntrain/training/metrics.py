"""Classification metrics computed from predictions, kept on the device until the end."""

from __future__ import annotations

import torch


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts [true class, predicted class] as int64 on the inputs' device."""
    flat = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Recall of each class (None for a class absent from the labels)."""
    totals = matrix.sum(dim=1).tolist()
    hits = matrix.diagonal().tolist()
    return [h / t if t else None for h, t in zip(hits, totals)]
