"""torch.export: an ExportedProgram saved as `.pt2` (torch.export.save), TorchScript's successor, with a dynamic
batch. Loading it needs torch (torch.export.load(path).module()), not cnntrain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def require() -> None:
    """torch.export ships with torch: nothing to check."""


def program(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The wrapper as an ExportedProgram whose batch size is free (`example` has two images: one would fix it)."""
    return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def write(module: nn.Module, example: torch.Tensor, path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    torch.export.save(program(module, example), str(path))
    return {"exporter": "torch.export"}
