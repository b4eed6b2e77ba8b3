"""OpenVINO IR (`model.xml` + `model.bin`), converted from the torch.export program (no TorchScript tracing), a
dynamic batch, float32 weights; int8 through NNCF's post-training quantization calibrated on the run's
training images."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnntrain.errors import UserError
from cnntrain.inference.export_pt2 import program


def require(int8: bool = False) -> None:
    """A UserError naming the extra when openvino (or, for int8, nncf) is missing."""
    for module in ("openvino", "nncf") if int8 else ("openvino",):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"OpenVINO export needs {module}: pip install 'cnntrain[openvino]'")


def write(module: nn.Module, example: torch.Tensor, path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import openvino as ov  # the openvino extra

    model = ov.convert_model(program(module, example))
    model.reshape([-1, *example.shape[1:]])  # the converter leaves every dimension free: only the batch is
    ov.save_model(model, str(path), compress_to_fp16=False)
    return {"exporter": "openvino.convert_model (torch.export)"}


def quantize(fp32: Path, path: Path, calibration: np.ndarray) -> dict[str, Any]:
    import nncf  # the openvino extra
    import openvino as ov

    nncf.set_log_level(logging.ERROR)  # its progress bars and notes would bury the export's one-line notices
    model = ov.Core().read_model(str(fp32))
    batches = [calibration[i : i + 1] for i in range(len(calibration))]
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    ov.save_model(quantized, str(path))
    return {"method": "NNCF post-training quantization (nncf.quantize), int8"}


def sidecars(path: Path) -> list[Path]:
    """The files an IR is made of besides its .xml."""
    return [path.with_suffix(".bin")]
