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


def auto_precision(device: torch.device) -> tuple[str, str]:
    """What `trainer.precision=auto` trains with on `device`, and why (a phrase for the start line and summary.json).

    A documented rule, not a probe timed at start-up: the same machine always picks the same precision (a re-run
    compares its floats), and a probe timed on a shared machine measures its neighbours. bf16 autocast where the CPU
    has native bf16 (AMX, or AVX512_BF16) and oneDNN runs bf16 on it: measured faster on the speedrun there
    (docs/speed.md, "trainer.precision=auto"). CUDA, MPS and every other CPU train in fp32."""
    if device.type != "cpu":
        return "fp32", f"fp32 on {device.type}: auto chooses bf16 only on CPUs with native bf16"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "fp32", "fp32: the CPU has no native bf16"
    if _cpu_supports("_is_amx_tile_supported"):
        return "bf16", "bf16 autocast: the CPU has AMX"
    if _cpu_supports("_is_avx512_bf16_supported"):
        return "bf16", "bf16 autocast: the CPU has AVX512_BF16"
    return "fp32", "fp32: the CPU has no native bf16"


def _cpu_supports(check: str) -> bool:
    """torch.cpu's private feature checks (torch >= 2.1); False where this torch lacks one."""
    found = getattr(torch.cpu, check, None)
    try:
        return bool(found()) if found is not None else False
    except RuntimeError:
        return False
