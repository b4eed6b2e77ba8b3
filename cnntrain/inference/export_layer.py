"""Which layer an export failed on: the model's layers exported one at a time, on the inputs they get.

An exporter's error names an op and a graph, seldom the layer a user wrote in model.layers, and each exporter
(torch.export, onnxscript, OpenVINO) words it its own way, so the text is not parsed. Instead, after a failure,
every sub-module is run once on the example to record its input, and the format's own exporter is tried on the
model's children one by one, descending into the first that fails until none of its children does: that is the
layer named. Only modules taking one tensor are tried; the search costs a few small exports, and only on failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

Attempt = Callable[[nn.Module, torch.Tensor, Path], Any]  # export one module to a path, raising when it cannot


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """No log records and no stderr while an exporter runs: torch.export logs a failed guard and prints the
    partial graph to stderr (hundreds of lines), and an export's outcome is said in one line by its caller."""
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def failing_layer(
    root: nn.Module, example: torch.Tensor, attempt: Attempt, suffix: str, error: BaseException
) -> str | None:
    """'NAME (Type)' of the deepest layer of `root` that `attempt` cannot export on its own (into a file ending in
    `suffix`) with an error of the same type as the whole model's `error` (their innermost causes compared); None
    when every layer exports alone (the failure is in how they are joined) or the inputs cannot be recorded."""
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
        found = _search(root, "", inputs, _Trial(attempt, Path(folder), suffix, type(innermost(error))))
    if found is None:
        return None
    module = root.get_submodule(found)
    shown = found.removeprefix("model.")  # ImageClassifier's network: its layers as model.layers numbers them
    return f"{shown} ({type(module).__name__})"


def innermost(err: BaseException) -> BaseException:
    """The error an exporter's own wrapper was raised from (dynamo wraps torch.export's reason in its own type)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _recorder(name: str, inputs: dict[str, torch.Tensor]) -> Callable[..., None]:
    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        if len(args) == 1 and isinstance(args[0], torch.Tensor) and name not in inputs:
            inputs[name] = args[0].detach()

    return record


class _Trial:
    """One layer through the exporter, each into a file of its own; True when it fails as the whole model did."""

    def __init__(self, attempt: Attempt, folder: Path, suffix: str, kind: type[BaseException]) -> None:
        self.attempt, self.folder, self.suffix, self.kind, self.count = attempt, folder, suffix, kind, 0

    def fails(self, layer: nn.Module, example: torch.Tensor) -> bool:
        self.count += 1
        try:
            self.attempt(layer, example, self.folder / f"layer{self.count}{self.suffix}")
        except Exception as err:  # the exporter's own error types
            return isinstance(innermost(err), self.kind)
        return False


def _search(module: nn.Module, prefix: str, inputs: dict[str, torch.Tensor], trial: _Trial) -> str | None:
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if name in inputs and trial.fails(child, inputs[name]):
            return _search(child, name, inputs, trial) or name  # this layer, or one inside it
    return None
