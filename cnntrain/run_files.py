"""The files a run leaves in its directory, next to Hydra's .hydra/: metrics.csv and summary.json.

summary.json is written atomically (temp file + rename), so a reader never sees half of it.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from pathlib import Path
from typing import Any

from cnntrain import __version__
from cnntrain.checkpoint import atomic_write

METRICS_FIELDS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "seconds")


class MetricsCSV:
    """metrics.csv: one row per epoch, flushed as it is written so a crash keeps finished epochs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists() or path.stat().st_size == 0:
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(METRICS_FIELDS)

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(name, "") for name in METRICS_FIELDS])


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


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
