"""TorchScript (`torch.jit.script`): the legacy format, kept while torch still loads it; `.pt2` (torch.export)
is its successor. Takes float32 in [0, 1] or uint8 0..255."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def require() -> None:
    """TorchScript ships with torch: nothing to check."""


def write(module: nn.Module, example: torch.Tensor, path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, yet still loadable
        torch.jit.save(torch.jit.script(module), str(path))
    return {"exporter": "torch.jit.script (legacy)"}


def runner(path: Path) -> Callable[[Any], Any]:
    """float32 numpy images -> numpy outputs, through torch.jit.load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path))

    def run(images: Any) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(images)).numpy()

    return run
