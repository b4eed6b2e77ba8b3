"""Everything besides the config that can change a run's numbers: versions, device, CPU instruction set,
threads, flags, commit. cnntrain-reproduce compares these (float_facts) before it compares any number.

torch, numpy and hydra are imported inside the functions that ask them ("lazy" below): run_dir.py imports this
module, and what reads a run directory back (cnntrain-report, the Python API's Run) stays torch-free."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnntrain.version import __version__


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    import hydra  # lazy
    import numpy  # lazy
    import torch  # lazy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version(),
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "hydra": hydra.__version__,
        "cnntrain": __version__,
    }


# /proc/cpuinfo flags that name a vector instruction set oneDNN, MKL or ATen may dispatch to
ISA_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4")
# environment variables that cap the instruction set the libraries dispatch to (so they change the floats)
DISPATCH_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


def cpu() -> dict[str, Any]:
    """The CPU and the instruction-set family torch's kernels dispatch to (torch.backends.cpu.get_cpu_capability:
    "AVX512", "AVX2", "DEFAULT", ...; ATEN_CPU_CAPABILITY can lower it), its vector-ISA flags as lscpu lists
    them (Linux), and any variable set that caps what oneDNN or MKL use: the same code and seed give different
    floats on AVX2 and AVX-512 machines."""
    import torch  # lazy

    model, flags = _cpuinfo()
    return {
        "model": model or platform.processor() or None,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "isa_flags": flags,
        "dispatch_env": {key: os.environ[key] for key in DISPATCH_ENV if key in os.environ},
    }


def device_name(device: Any) -> str:
    """What the device is: the GPU's name for CUDA, the CPU's model otherwise."""
    import torch  # lazy

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def _cpuinfo() -> tuple[str | None, list[str] | None]:
    """(model name, vector-ISA flags) from /proc/cpuinfo's first processor, (None, None) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = sorted(f for f in value.split() if f.startswith(ISA_FLAG_PREFIXES))
        if not line.strip() and model is not None:
            break
    return model, flags


def _cudnn_version() -> str | None:
    """cuDNN's version where this process uses CUDA (loading cuDNN only to ask costs a CPU run 0.14 s)."""
    import torch  # lazy

    used = torch.cuda.is_initialized() and torch.backends.cudnn.is_available()
    version = torch.backends.cudnn.version() if used else None
    return str(version) if version is not None else None


def torchvision_version() -> str | None:
    """torchvision.__version__ (with its build tag, e.g. +cu130), read from its version.py: importing
    torchvision itself takes more than a second and a run of the MNIST family does not need it."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).with_name("version.py")
    if not path.is_file():
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.MULTILINE)
    return found.group(1) if found else None


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]


def git_commit() -> dict[str, Any] | None:
    """The project's git commit (and whether the tree had changes), or None outside a git checkout."""
    repo = Path(__file__).resolve().parents[2]  # <checkout>/cnntrain/reporting/provenance.py
    if not (repo / "pyproject.toml").is_file() or not (repo / "cnntrain").is_dir():  # a wheel: no checkout
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def provenance(device: Any, precision: str | None = None) -> dict[str, Any]:
    """Everything besides the config that can make a re-run's numbers differ (reproduce compares these);
    `precision`: trainer.precision, whose `auto` is decided by this machine (precision_choice says how)."""
    import torch  # lazy

    from cnntrain.device import auto_precision  # torch: lazy as above

    used, why = auto_precision(device) if precision == "auto" else (precision, None)
    return {
        "device": str(device),
        "device_name": device_name(device),
        "precision_choice": {"asked": precision, "used": used, "rule": why},
        "cpu": cpu(),
        "threads": torch.get_num_threads(),
        "deterministic": {
            "algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        },
        "platform": {"system": platform.platform(), "machine": platform.machine(), "host": platform.node()},
        "git": git_commit(),
        "versions": versions(),
        "command": command_line(),
    }
