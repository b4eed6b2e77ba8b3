"""Everything besides the config that can change a run's numbers: versions, device, threads, flags, commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnntrain import __version__


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    import hydra
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version(),
        "hydra": hydra.__version__,
        "cnntrain": __version__,
    }


def torchvision_version() -> str | None:
    """torchvision.__version__ (with its build tag, e.g. +cu130), read from its version.py: importing
    torchvision itself takes more than a second and a run of the MNIST family does not need it."""
    import importlib.util
    import re

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
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "pyproject.toml").is_file():  # installed from a wheel: no checkout to ask
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def provenance(device: Any) -> dict[str, Any]:
    """Everything besides the config that can make a re-run's numbers differ (reproduce compares these)."""
    import torch

    return {
        "device": str(device),
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
