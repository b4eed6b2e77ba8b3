"""The files a run leaves in its directory, next to Hydra's .hydra/: metrics.csv and summary.json.

summary.json is written atomically (temp file + rename), so a reader never sees half of it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cnntrain import __version__
from cnntrain.checkpoint import atomic_write

METRICS_FIELDS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "seconds")


class MetricsCSV:
    """metrics.csv: one row per epoch, flushed as it is written so a crash keeps finished epochs.

    It starts as the header plus `rows` (a resumed run's history from its checkpoint), written
    atomically: rows from epochs after the checkpoint are dropped, never duplicated.
    """

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(METRICS_FIELDS)
        writer.writerows(_cells(row) for row in rows or [])
        atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue(), encoding="utf-8", newline=""))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(_cells(row))


def _cells(row: dict[str, Any]) -> list[Any]:
    return [row.get(name, "") for name in METRICS_FIELDS]


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    import hydra
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hydra": hydra.__version__,
        "cnntrain": __version__,
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    text = json.dumps(summary, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_failure(path: Path, error: str, elapsed_seconds: float) -> None:
    """The summary.json of a sweep job that failed, so the sweep summary can list it."""
    write_summary(path, {"status": "failed", "error": error, "elapsed_seconds": elapsed_seconds,
                         "command": command_line()})


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
