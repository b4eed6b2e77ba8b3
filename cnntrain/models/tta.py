"""Test-time augmentation (trainer.tta): a model's outputs for each image and its mirror, averaged.

The one TTA of cnntrain: validation, test, `cnntrain-eval` and `cnntrain-predict` all predict through
`predict_with_tta`, so `trainer.tta` means the same thing everywhere. The task supplies only what differs, how
the mean of the two views becomes outputs (`merge`): log-probabilities for one class per image
(`log_probabilities`), the mean logits themselves for a set of labels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def log_probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the geometric mean of the views' predictions; cross-entropy, NLL and argmax accept
    them as they accept logits or log-probabilities."""
    return outputs.log_softmax(dim=1)


def predict_with_tta(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tta: str,
    merge: Callable[[torch.Tensor], torch.Tensor] = log_probabilities,
) -> torch.Tensor:
    """The model's outputs; with tta='hflip', `merge` of the mean of its outputs for each image and its mirror."""
    if tta == "none":
        return model(images)
    return merge((model(images) + model(images.flip(3))) / 2)
