"""A trained model as a Python user holds it: images in, class scores out, the normalisation built in.

Run.model() and Run.predict() (cnntrain.results) take images as people have them: uint8 0..255 or float
0..1, a batch [N,C,H,W], grayscale [N,H,W] or one image [C,H,W]. `as_uint8_batch` checks such input against
the model's input shape and says in one line what it got and what it needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnntrain.data.description import DataDescription, Normalize
from cnntrain.errors import UserError


class ImageClassifier(nn.Module):
    """images (uint8 0..255 or float 0..1; [N,C,H,W], or [N,H,W] for one channel) -> the run's normalisation ->
    the trained model's outputs (logits, or log-probabilities for a model that ends in log_softmax)."""

    def __init__(self, model: nn.Module, description: DataDescription) -> None:
        super().__init__()
        self.normalize = Normalize(description)
        self.model = model
        self.classes = list(description.classes)
        self.input_shape = tuple(description.input_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3 and self.input_shape[0] == 1:
            images = images.unsqueeze(1)
        return self.model(self.normalize(images.to(self.normalize.mean.device)))


def as_uint8_batch(images: Any, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N,C,H,W] from a tensor or array of images (uint8 0..255 or float 0..1) of the model's input size."""
    if not isinstance(images, torch.Tensor):
        try:
            images = torch.as_tensor(images.copy() if hasattr(images, "copy") else images)
        except (TypeError, ValueError, RuntimeError):
            raise UserError(f"predict() takes image file paths or images as a tensor or array, not "
                            f"{type(images).__name__}") from None
    channels, height, width = input_shape
    if images.dim() == 2 or (images.dim() == 3 and channels != 1):
        images = images.unsqueeze(0)  # one image: [H,W] or [C,H,W]
    if images.dim() == 3:
        images = images.unsqueeze(1)  # grayscale [N,H,W]
    need = f"[N,{channels},{height},{width}]" + (f" or [N,{height},{width}]" if channels == 1 else "")
    if images.dim() != 4 or tuple(images.shape[1:]) != (channels, height, width):
        raise UserError(f"images of shape {list(images.shape)}: the model takes {need} (or image file paths, which "
                        f"are resized)")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise UserError(f"images of dtype {images.dtype}: expected uint8 0..255 or float 0..1")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise UserError(f"float images range from {low:g} to {high:g}: expected 0..1 (or uint8 0..255)")
    return (images.float() * 255).round().to(torch.uint8)
