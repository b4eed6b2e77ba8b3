"""The device and the knobs that change speed, not the maths of the model: precision and memory layout.

Training, validation and test all go through one `Accel`, so evaluation always runs with the same
settings as training. bf16 autocast works on CPU and CUDA; fp16 needs CUDA and a gradient scaler; `auto` is
bf16 where the CPU trains faster so (cnntrain.device.auto_precision), fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnntrain.device import auto_precision, resolve_device
from cnntrain.errors import DeviceError


@dataclass
class Accel:
    device: torch.device
    precision: str = "fp32"  # trainer.precision; `auto` becomes what cnntrain.device.auto_precision picks
    channels_last: bool = False
    compile: bool = False
    scaler: Any = field(default=None, init=False)
    chosen: str | None = field(default=None, init=False)  # why, when trainer.precision=auto decided the precision

    def __post_init__(self) -> None:
        if self.precision == "auto":
            self.precision, self.chosen = auto_precision(self.device)
        if self.precision == "fp16":
            if self.device.type != "cuda":
                raise DeviceError(
                    f"trainer.precision=fp16 needs a CUDA device (this run uses {self.device}); "
                    "use trainer.precision=bf16 or fp32"
                )
            self.scaler = torch.amp.GradScaler("cuda")

    def autocast(self) -> AbstractContextManager[Any]:
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
        self.backward(loss)
        self.step(optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), scaled for fp16; gradients add up until `step` (gradient accumulation)."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, clip: float | None = None) -> None:
        """optimizer.step(), after clipping the gradients' global norm to `clip` when given (unscaled first for
        fp16, so the threshold is in the gradients' own units)."""
        if clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


def check_machine(name: str, precision: str, devices: int = 1, sync_batchnorm: bool = False) -> None:
    """`device`, trainer.precision, trainer.devices and trainer.sync_batchnorm against this machine (the preflight
    asks, before anything is written): the device must exist and take the precision, and trainer.devices=N
    processes need N GPUs on CUDA (one each); on the CPU they share the cores."""
    device = resolve_device(name)
    Accel(device, precision)
    if device.type == "cuda" and devices > torch.cuda.device_count():
        raise DeviceError(
            f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"use trainer.devices={torch.cuda.device_count()} or device=cpu"
        )
    if device.type == "mps" and devices > 1:
        raise DeviceError(f"trainer.devices={devices}: data-parallel training runs on CUDA or the CPU, not mps")
    if sync_batchnorm and device.type != "cuda":
        raise DeviceError(
            f"trainer.sync_batchnorm=true needs CUDA devices (this run uses {device}): torch's "
            f"SyncBatchNorm has no CPU kernel; set trainer.sync_batchnorm=false"
        )
