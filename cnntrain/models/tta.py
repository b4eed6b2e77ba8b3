"""Test-time augmentation: a model's prediction averaged with its prediction for the mirrored image.

Validation, test, `cnntrain-eval` and `cnntrain-predict` all predict through here, so `trainer.tta`
means the same thing everywhere.
"""

from __future__ import annotations

import torch
from torch import nn


def predict_with_tta(model: nn.Module, images: torch.Tensor, tta: str) -> torch.Tensor:
    """The model's outputs; with tta='hflip', log-probabilities of the geometric mean of the predictions
    for each image and its mirror. Both losses (cross-entropy and NLL) and argmax accept either form."""
    if tta == "none":
        return model(images)
    return ((model(images) + model(images.flip(3))) / 2).log_softmax(dim=1)
