"""Checkpoint files: written atomically, read back safely.

A checkpoint is a dict of tensors and plain values only, so it loads with `weights_only=True`
(no arbitrary code runs when a file is opened).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cnntrain.errors import CheckpointError, first_line
from cnntrain.files import atomic_write

FORMAT = "cnntrain-checkpoint"
FORMAT_VERSION = 1


def _load_failure(path: Path, err: Exception) -> str:
    """Why torch.load failed, in words (its own message about weights_only is long and misleading here)."""
    if not zipfile.is_zipfile(path):
        return "not a PyTorch file (corrupt, truncated or foreign)"
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects, not only tensors and plain values; refused (weights_only loading)"
    return first_line(err)[:200]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Save `payload` (model/optimizer/scheduler state, epoch, RNG, ...) tagged with our format."""
    tagged = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda tmp: torch.save(tagged, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint we wrote, or raise CheckpointError saying what is wrong with the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for torn or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(path, err)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cnntrain checkpoint (no '{FORMAT}' tag)")
    return payload
