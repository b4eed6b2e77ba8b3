"""Which layer an export failed on: the model's layers exported one at a time, on the inputs they get.

An exporter's error names an op and a graph, seldom the layer a user wrote in model.layers, and each exporter
(torch.export, onnxscript, OpenVINO) words it its own way, so the text is not parsed. Instead, after a failure,
every sub-module is run once on the example to record its input, and the format's own exporter is tried on the
model's children one by one, descending into the first that fails until none of its children does: that is the
layer named. Only modules taking one tensor are tried; the search costs a few small exports, and only on failure.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

Attempt = Callable[[nn.Module, torch.Tensor, Path], Any]  # export one module to a path, raising when it cannot


def failing_layer(root: nn.Module, example: torch.Tensor, attempt: Attempt) -> str | None:
    """'NAME (Type)' of the deepest layer of `root` that `attempt` cannot export on its own; None when every
    layer exports alone (the failure is in how they are joined) or the inputs cannot be recorded."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in root.named_modules():
        if name:
            hooks.append(module.register_forward_pre_hook(_recorder(name, inputs)))
    try:
        with torch.no_grad():
            root(example)
    except Exception:  # the eager model itself fails on the example: nothing to bisect
        return None
    finally:
        for hook in hooks:
            hook.remove()
    with tempfile.TemporaryDirectory(prefix="export-layer-") as folder:
        found = _search(root, "", inputs, attempt, Path(folder))
    if found is None:
        return None
    module = root.get_submodule(found)
    shown = found.removeprefix("model.")  # ImageClassifier's network: its layers as model.layers numbers them
    return f"{shown} ({type(module).__name__})"


def _recorder(name: str, inputs: dict[str, torch.Tensor]) -> Callable[..., None]:
    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        if len(args) == 1 and isinstance(args[0], torch.Tensor) and name not in inputs:
            inputs[name] = args[0].detach()

    return record


def _search(
    module: nn.Module, prefix: str, inputs: dict[str, torch.Tensor], attempt: Attempt, folder: Path
) -> str | None:
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if name not in inputs:
            continue
        try:
            attempt(child, inputs[name], folder / f"{len(list(folder.iterdir()))}.part")
        except Exception:  # the exporter's own error types: this layer (or one inside it) is the one
            return _search(child, name, inputs, attempt, folder) or name
    return None
