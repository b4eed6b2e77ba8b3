"""The one image-classifier wrapper: a finished run's model with its input checks, normalisation and head.

`Run.model()`, `Run.predict()`, cnntrain-predict and cnntrain-export all hold a run's model as an
`ImageClassifier`, so they read image files the same way (colour and the run's dataset.resize), accept the
same tensors and arrays (uint8 0..255 or float 0..1, a batch [N,C,H,W], grayscale [N,H,W] or one image
[C,H,W]; `as_uint8_batch` says in one line what it got and what it needs), normalise with the run's mean/std
and end in the task's head (cnntrain.training.tasks): softmax probabilities for one class per image, a sigmoid
per label and the thresholds for a set of labels. A new way out (a format, a server) starts from here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.data.description import Normalize
from cnntrain.data.images import decode_image
from cnntrain.errors import ConfigError, UserError
from cnntrain.inference.load import SavedRun
from cnntrain.models.tta import predict_with_tta

ImagesOrPaths = Any  # a path, a list of paths, or images: uint8 0..255 or float 0..1, [N,C,H,W], [N,H,W], [C,H,W]


class ImageClassifier(nn.Module):
    """images (uint8 0..255 or float 0..1; [N,C,H,W], or [N,H,W] for one channel) -> the run's normalisation ->
    the trained model's outputs (logits, or log-probabilities for a model that ends in log_softmax); with
    `export_head`, then the task's export head (a sigmoid per label for a multi-label run), as exported files do.
    `probabilities` and `predictions` add the run's test-time augmentation and the task's head."""

    def __init__(self, saved: SavedRun, *, export_head: bool = False) -> None:
        super().__init__()
        self.normalize = Normalize(saved.description)
        self.model = saved.model
        self.head = saved.task.export_head() if export_head else nn.Identity()
        self.classes = list(saved.classes)
        self.input_shape = tuple(saved.input_shape)
        self.resize = saved.resize
        self.tta = saved.tta
        self.task = saved.task
        self.to(saved.mean.device).eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3 and self.input_shape[0] == 1:
            images = images.unsqueeze(1)
        if images.device != self.normalize.mean.device:  # a test, so an ONNX trace records no cast
            images = images.to(self.normalize.mean.device)
        return self.head(self.model(self.normalize(images)))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Each class's probability (a set of labels: each label's) for images [N,C,H,W] (uint8, or float 0..1),
        with the run's test-time augmentation."""
        with torch.inference_mode():
            return self.task.probabilities(predict_with_tta(self, images, self.tta, self.task.merge_views))

    def predictions(self, images: torch.Tensor, top_k: int) -> list[Any]:
        """Per image, the task's answer: the top-k (class, probability) pairs, most likely first; for a set of
        labels, the labels at or above their thresholds and the top-k labels (cnntrain.training.multi_label)."""
        return self.task.predictions(self.probabilities(images), self.classes, top_k)

    def images(self, images_or_paths: ImagesOrPaths) -> torch.Tensor:
        """uint8 [N,C,H,W] from image files (decoded and resized as the run's training images were) or from
        images as a tensor or array of the model's input size."""
        if isinstance(images_or_paths, (str, os.PathLike)):
            images_or_paths = [images_or_paths]
        if isinstance(images_or_paths, (list, tuple)) and all(
            isinstance(p, (str, os.PathLike)) for p in images_or_paths
        ):
            if not images_or_paths:
                raise ConfigError("predict() got no images")
            return load_images([Path(p) for p in images_or_paths], self.input_shape, self.resize)
        return as_uint8_batch(images_or_paths, self.input_shape)


def load_images(paths: Sequence[Path], input_shape: tuple[int, ...], resize: str = "stretch") -> torch.Tensor:
    """uint8 [N, C, H, W]: every file decoded (resized as the run's dataset.resize says) before anything is
    predicted, so a bad one fails first."""
    channels, height, width = input_shape
    return torch.stack([decode_image(path, channels, height, width, resize=resize) for path in paths])


def as_uint8_batch(images: Any, input_shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 [N,C,H,W] from a tensor or array of images (uint8 0..255 or float 0..1) of the model's input size."""
    if not isinstance(images, torch.Tensor):
        try:
            images = torch.as_tensor(images.copy() if hasattr(images, "copy") else images)
        except (TypeError, ValueError, RuntimeError):
            raise UserError(
                f"predict() takes image file paths or images as a tensor or array, not {type(images).__name__}"
            ) from None
    channels, height, width = input_shape
    if images.dim() == 2 or (images.dim() == 3 and channels != 1):
        images = images.unsqueeze(0)  # one image: [H,W] or [C,H,W]
    if images.dim() == 3:
        images = images.unsqueeze(1)  # grayscale [N,H,W]
    need = f"[N,{channels},{height},{width}]" + (f" or [N,{height},{width}]" if channels == 1 else "")
    if images.dim() != 4 or tuple(images.shape[1:]) != (channels, height, width):
        raise UserError(
            f"images of shape {list(images.shape)}: the model takes {need} (or image file paths, which are resized)"
        )
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise UserError(f"images of dtype {images.dtype}: expected uint8 0..255 or float 0..1")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise UserError(f"float images range from {low:g} to {high:g}: expected 0..1 (or uint8 0..255)")
    return (images.float() * 255).round().to(torch.uint8)
