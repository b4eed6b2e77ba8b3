"""The loss with class weights (trainer.class_weights): each image's loss times its class's weight, averaged
over the batch's images.

torch's own `weight=` argument divides by the batch's sum of weights instead. That makes a batch's loss depend
on which classes it happens to hold, so the shares of a data-parallel batch and the per-batch sums of an
evaluation would no longer add up to the mean over the split; a plain mean over images keeps both exact. With
balanced weights (n_train / (classes x count)) the mean weight over the training split is 1, so the weighted
loss keeps the unweighted one's scale and the same learning rate suits it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassWeightedLoss(nn.Module):
    """cross_entropy (with label smoothing) on logits, or nll on log-probabilities, weighted by the true class."""

    def __init__(self, kind: str, weight: torch.Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.kind = kind
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`labels` are class indices, or (MixUp/CutMix) a probability per class: then an image's weight is its
        classes' weights mixed in the same proportions."""
        if self.kind == "nll":
            losses = F.nll_loss(scores, labels, reduction="none")
        else:
            losses = F.cross_entropy(scores, labels, label_smoothing=self.label_smoothing, reduction="none")
        weights = labels.to(self.weight.dtype) @ self.weight if labels.is_floating_point() else self.weight[labels]
        return (losses * weights).mean()
