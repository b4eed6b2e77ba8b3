"""What a model needs to know about its inputs: shape, classes and the normalisation, in one type.

The data decides these (a config that states them is checked against the data); the run puts them into
its config and its checkpoints, and eval, predict and export read them back from there. `normalize` is
the one formula that turns stored uint8 images into model inputs, in training and after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from cnntrain.config.names import TASK_MULTILABEL, TASK_SINGLE
from cnntrain.config.saved import literal
from cnntrain.config.schema import DatasetConfig


def normalize(images_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x/255 - mean)/std as float32; in place on the fresh float copy to save two allocations."""
    return images_uint8.float().div_(255.0).sub_(mean).div_(std)


@dataclass
class DataDescription:
    """Input shape [C, H, W], class names, and per-channel mean/std in [0, 1] units (None until measured); `task`:
    single (one class per image, int64 labels [N]) or multilabel (a set per image, float32 multi-hot labels [N, K],
    the classes being the K label names)."""

    input_shape: tuple[int, int, int]
    classes: list[str]
    mean: list[float] | None = None
    std: list[float] | None = None
    # what the source found while describing (an image folder's file lists...), so a run looks at its files once
    found: Any = field(default=None, repr=False, compare=False)
    task: str = "single"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_stats(self, mean: list[float], std: list[float]) -> DataDescription:
        """The same description with statistics, rounded to the float32 the model sees (and checkpoints keep)."""
        return replace(self, mean=_float32(mean), std=_float32(std))

    def stats(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as float32 [1, C, 1, 1] tensors on `device`."""
        channels = self.input_shape[0]
        return tuple(
            torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1).to(device)  # type: ignore
            for values in (self.mean, self.std)
        )

    def as_dict(self) -> dict[str, Any]:
        """The plain form stored in checkpoints under 'data'."""
        return {
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "mean": self.mean,
            "std": self.std,
            "task": self.task,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DataDescription:
        return cls(
            tuple(int(d) for d in data["input_shape"]),
            [str(c) for c in data["classes"]],  # type: ignore
            _floats(data.get("mean")),
            _floats(data.get("std")),
            task=_task(data.get("task")),
        )

    FILLED_KEYS = ("input_shape", "classes", "num_classes", "mean", "std", "task")
    """The dataset config keys `fill` writes."""

    def fill(self, dataset_cfg: DatasetConfig) -> None:
        """Write into a dataset config what the data decided, so `${dataset.num_classes}` means the data's."""
        dataset_cfg.input_shape = list(self.input_shape)
        dataset_cfg.classes = [literal(name) for name in self.classes]  # names are data: `${...}` in one is text
        dataset_cfg.num_classes = self.num_classes
        dataset_cfg.task = self.task
        if self.mean is not None:
            dataset_cfg.mean, dataset_cfg.std = list(self.mean), list(self.std or [])


class Normalize(nn.Module):
    """The normalisation as a module, for exported models: float images in [0, 1] or uint8 0..255 in."""

    def __init__(self, description: DataDescription) -> None:
        super().__init__()
        mean, std = description.stats()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return (images - self.mean) / self.std


def _float32(values: Any) -> list[float]:
    return torch.tensor([float(v) for v in values], dtype=torch.float32).tolist()


def _task(value: Any) -> str:
    """A saved description's task: single (also for runs from before multi-label data) or multilabel."""
    if value in (None, TASK_SINGLE):
        return TASK_SINGLE
    if value == TASK_MULTILABEL:
        return TASK_MULTILABEL
    raise ValueError(f"task {value!r} is not single or multilabel")


def _floats(values: Any) -> list[float] | None:
    return None if values is None else [float(v) for v in values]
