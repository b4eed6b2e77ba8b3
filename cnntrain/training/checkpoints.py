"""Checkpoint files: written atomically, read back safely.

A checkpoint is a dict of tensors and plain values only, so it loads with `weights_only=True`
(no arbitrary code runs when a file is opened).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.config.saved import walk
from cnntrain.disk import torch_save
from cnntrain.errors import CheckpointError, UserError, first_line
from cnntrain.files import atomic_write, kind_of

FORMAT = "cnntrain-checkpoint"
FORMAT_VERSION = 1
SHOWN = 3  # how many mismatching keys a message names
MAX_PAYLOAD_NODES = 200_000  # values in a checkpoint, tensors counted as one; a run's has a few thousand
FOREIGN = "use a checkpoint written by a cnntrain run"


def _load_failure(path: Path, err: Exception) -> str:
    """Why torch.load failed, in words (its own message about weights_only is long and misleading here)."""
    if not zipfile.is_zipfile(path):
        return "not a PyTorch file (corrupt, truncated or foreign)"
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects, not only tensors and plain values; refused (weights_only loading)"
    return first_line(err)[:200]


def save_checkpoint(path: Path, payload: dict[str, Any], *, root: Path | None = None) -> None:
    """Save `payload` (model/optimizer/scheduler state, epoch, RNG, ...) tagged with our format, inside `root`
    (the run directory: a checkpoints/ folder that links out of it is refused)."""
    tagged = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(path, lambda tmp: torch_save(tagged, tmp), root=root)


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
    try:
        walk(payload, str(path), limit=MAX_PAYLOAD_NODES, plain_only=False, fix=FOREIGN)
    except UserError as err:
        raise CheckpointError(str(err)) from None
    return payload


def load_weights(model: nn.Module, state: Any, path: Path) -> None:
    """Load a checkpoint's 'model' weights into `model`, or raise CheckpointError naming the first keys that do
    not fit (torch's own message is many lines long)."""
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: its 'model' is {kind_of(state)}, not the mapping of weights a run saves; the "
            f"file was edited or written by another program"
        )
    mismatch = weights_mismatch(model, state)
    if mismatch:
        raise CheckpointError(
            f"{path}: its 'model' weights do not fit the model its config builds ({mismatch}); "
            f"the file was edited or mixes two runs"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its 'model' weights cannot be loaded: {first_line(err)[:200]}") from None


def weights_mismatch(model: nn.Module, state: Mapping[Any, Any]) -> str:
    """The first missing, unexpected and differently shaped keys of `state` against `model`, in words; '' if none."""
    expected = model.state_dict()
    shapes = [
        f"{key} is {_shape(value)} in the file, {list(expected[key].shape)} in the model"
        for key, value in state.items()
        if key in expected and not _same_shape(value, expected[key])
    ]
    parts = [
        ("missing", [str(key) for key in expected if key not in state]),
        ("unexpected", [str(key) for key in state if key not in expected]),
        ("shape", shapes),
    ]
    return "; ".join(f"{word} {_first(keys)}" for word, keys in parts if keys)


def _first(items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _same_shape(value: Any, expected: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.shape == expected.shape


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else kind_of(value)
