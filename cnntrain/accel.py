"""Precision and memory layout: the knobs that change speed, not the maths of the model.

Training, validation and test all go through one `Accel`, so evaluation always runs with the same
settings as training. bf16 autocast works on CPU and CUDA; fp16 needs CUDA and a gradient scaler.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ContextManager

import torch
from torch import nn

from cnntrain.errors import DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class Accel:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    scaler: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.precision == "fp16":
            if self.device.type != "cuda":
                raise DeviceError(f"trainer.precision=fp16 needs a CUDA device (this run uses {self.device}); "
                                  "use trainer.precision=bf16 or fp32")
            self.scaler = torch.amp.GradScaler("cuda")

    def autocast(self) -> ContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move to the device in the chosen layout; wrap in torch.compile when asked."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def prepare_input(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() + optimizer.step(), through the gradient scaler for fp16."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
