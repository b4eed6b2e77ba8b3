"""The device a run asks for (`device=auto|cpu|cuda|cuda:N|mps`) as a torch.device on this machine.

Below reporting and training: the run's setup resolves it, and cnntrain-reproduce's comparison of what decides the
floats (reporting/float_facts.py) asks which device a re-run would get.
"""

from __future__ import annotations

import torch

from cnntrain.config.names import DEVICES
from cnntrain.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={name}: CUDA is not available on this machine; use device=auto or device=cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device={name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise DeviceError("device=mps: Apple MPS is not available on this machine; use device=auto or device=cpu")
        return torch.device("mps")
    raise DeviceError(f"device={name}: expected one of {', '.join(DEVICES)}")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
