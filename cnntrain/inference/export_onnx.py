"""ONNX: the dynamo exporter (torch.export, then onnxscript), a dynamic batch, opset 20; int8 by ONNX Runtime's
static QDQ quantization (per-channel weights) calibrated on the run's training images.

The legacy TorchScript-based exporter is kept only as the named fallback for a model the dynamo exporter cannot
take; the export then says so in one line and its JSON records `"exporter": "legacy"`.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnntrain.errors import UserError, first_line
from cnntrain.inference.export_layer import failing_layer, innermost
from cnntrain.inference.export_pt2 import program

ONNX_OPSET = 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's colour codes, in the dynamo exporter's messages


def require() -> None:
    """A UserError naming the extra when the dynamo exporter's packages are missing."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"ONNX export needs {module}: pip install 'cnntrain[onnx]'")


def write(module: nn.Module, example: torch.Tensor, path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """`module` as one ONNX file taking float32 images [batch, C, H, W] named 'images'."""
    try:
        dynamo(module, example, path)
        return {"exporter": "dynamo", "opset": ONNX_OPSET}
    except Exception as err:  # torch.export and onnxscript raise many types; any of them means "try the fallback"
        # searched for with torch.export alone first (the dynamo exporter's first step, where most failures are, in
        # a fraction of the time), then with the whole exporter (a failure in onnxscript's translation)
        layer = failing_layer(module, example, _torch_export, ".pt2", err) or failing_layer(
            module, example, dynamo, ".onnx", err
        )
        say(
            f"the dynamo ONNX exporter cannot take {f'layer {layer} of ' if layer else ''}this model "
            f"({root_cause(err)}); using the legacy TorchScript-based exporter"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["outputs"],
            dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return {"exporter": "legacy", "opset": 17}


def dynamo(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The dynamo exporter alone (torch.export, then onnxscript), a dynamic batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["outputs"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=ONNX_OPSET,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def _torch_export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    program(module, example)


def root_cause(err: BaseException) -> str:
    """The first line of the error the exporter's own wrapper was raised from (dynamo wraps the reason in a page of
    advice, coloured for a terminal)."""
    return ANSI.sub("", first_line(innermost(err)))


def quantize(fp32: Path, path: Path, calibration: np.ndarray) -> dict[str, Any]:
    """int8 QDQ: per-channel int8 weights, uint8 activations whose ranges are the calibration images' (MinMax)."""
    from onnxruntime.quantization import (  # the onnx extra
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.split(calibration, range(32, len(calibration), 32)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = fp32.with_name("prepared.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared))  # shapes inferred and graph folded: better int8 placement
    except Exception:  # an optional step: a model it cannot take is quantized as exported
        prepared = fp32
    quantize_static(
        str(prepared),
        str(path),
        Images(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    return {"method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations (MinMax)"}
