"""Weights from a file for a named network (`weights: /path/to/file`): a state dict or a checkpoint that holds one,
read without running code (weights_only, or safetensors), fitted to the network and loaded exactly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.errors import ModelConfigError, first_line
from cnntrain.models.registry import ArgError
from cnntrain.models.surgery import set_head, set_stem_channels

WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
AUX_HEADS = ("AuxLogits.", "aux1.", "aux2.")  # inception/googlenet side heads: never used here, never loaded


def is_weights_file(weights: str) -> bool:
    """Whether `weights` names a file (a path, or a weights file's suffix) rather than a weights name or tag."""
    return os.sep in weights or "/" in weights or weights.endswith(WEIGHT_FILE_SUFFIXES) or Path(weights).exists()


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A weights file as a state dict: a bare state dict, or a checkpoint that holds one under 'state_dict',
    'model' or 'model_state_dict' (cnntrain's checkpoints among them)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ArgError(
            f"weights file {file} not found; give a torchvision weights name, a timm tag, or an existing file"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file  # only for a .safetensors file

            found: Any = load_file(str(file))
        else:
            found = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelConfigError(
            f"weights file {file} cannot be read ({first_line(err)}); it is not a PyTorch state dict or checkpoint"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(found, dict) and isinstance(found.get(key), dict):
            found = found[key]
            break
    if not isinstance(found, dict) or not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise ModelConfigError(f"weights file {file} holds no state dict (a mapping of names to tensors)")
    return found


def load_exactly(net: nn.Module, state: dict[str, torch.Tensor], what: str, arch: str) -> None:
    """Load every tensor of `state` into `net`; keys or shapes that do not fit are one line naming the first."""
    own = net.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    reshaped = [
        f"{key} {list(state[key].shape)} vs {list(own[key].shape)}"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]
    problems = [
        f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped))
        if keys
    ]
    if problems:
        raise ModelConfigError(f"weights {what} do not fit {arch}: {'; '.join(problems)}")
    net.load_state_dict(state)


def fit_to_file(
    net: nn.Module, state: dict[str, torch.Tensor], stem: str, head: str | None, arch: str, weights: str
) -> None:
    """Make `net` take the file's tensors: keys with the file's prefix ('module.', a cnntrain checkpoint's
    '0.net.') are stripped, and the stem and head are sized as in the file (the run adapts them after)."""
    suffix = f"{stem}.weight"
    prefixes = [key[: -len(suffix)] for key in state if key.endswith(suffix)]
    prefix = min(prefixes, key=len) if prefixes else ""
    if prefix:
        kept = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        state.clear()
        state.update(kept)
    for key in [key for key in state if key.startswith(AUX_HEADS)]:
        del state[key]
    stem_weight = state.get(suffix)
    if stem_weight is not None and stem_weight.dim() == 4:
        set_stem_channels(net, stem, stem_weight.shape[1])
    head_weight = state.get(f"{head}.weight") if head else None
    if head_weight is not None:
        set_head(net, head, head_weight.shape[0])
