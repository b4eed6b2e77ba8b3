"""Export a finished run's model as a self-contained file to ship: TorchScript or ONNX, with a JSON contract.

The exported module is the run's ImageClassifier (cnntrain.inference.classifier) ending in the task's export
head: it takes images as float32 in [0, 1] (TorchScript also takes uint8 0..255), NCHW, and normalises them
itself with the run's mean/std, so callers never need the training config. A multi-label model's export gives
each label's probability (a sigmoid at its end); the JSON adds each label's threshold. cnntrain-export and
`Run.export()` both come here; another format is another exporter beside these two.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.errors import UserError
from cnntrain.files import atomic_write, safe_folder, write_text
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.load import SavedRun
from cnntrain.reporting.provenance import versions

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
ONNX_OPSET = 17
RESIZE_HOW = {  # how training fitted an image file to height x width (cnntrain.data.images), for callers to match
    "stretch": "bilinear resize to height x width, aspect ratio ignored",
    "crop": "bilinear resize so the image covers height x width (its shorter side fits), then the centre crop",
    "pad": "bilinear resize so the image fits inside height x width, centred on zeros (black)",
}


def export_run(saved: SavedRun, fmt: str, path: Path, *, root: Path | None = None) -> Path:
    """Write the export and its metadata JSON (metadata_path) inside `root` (the run directory, for the default
    export/ folder: one that links out of it is refused); return the export's path."""
    safe_folder(path.parent, root)
    for target in (path, metadata_path(path)):
        if target.is_dir():
            raise UserError(f"export path {target} is an existing folder; name the file to write (e.g. "
                            f"{target / ('model' + FORMATS.get(fmt, '.pt'))})")
    module = ImageClassifier(saved, export_head=True).cpu()
    if fmt == "torchscript":
        export_torchscript(module, path)
    else:
        export_onnx(module, torch.rand(1, *saved.input_shape), path)
    write_text(metadata_path(path), json.dumps(metadata(saved, fmt, path), indent=2) + "\n")
    return path


def export_torchscript(module: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, yet still the loadable format
        scripted = torch.jit.script(module)
        atomic_write(path, lambda tmp: torch.jit.save(scripted, str(tmp)))


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    if importlib.util.find_spec("onnx") is None:  # torch's exporter needs it; say so plainly
        raise UserError("ONNX export needs the onnx package: pip install 'cnntrain[onnx]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        atomic_write(path, lambda tmp: torch.onnx.export(
            module, (example,), str(tmp), input_names=["images"], output_names=["outputs"],
            dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}}, opset_version=ONNX_OPSET,
            dynamo=False))


def metadata(saved: SavedRun, fmt: str, path: Path) -> dict[str, Any]:
    """The contract of the exported file, for whoever loads it without cnntrain."""
    channels, height, width = saved.input_shape
    return {
        "file": path.name,
        "format": fmt,
        "input": {"name": "images", "layout": "NCHW", "shape": ["batch", channels, height, width],
                  "dtype": "float32" if fmt == "onnx" else "float32 or uint8",
                  "range": "[0, 1] (uint8 0..255 is divided by 255)" if fmt == "torchscript" else "[0, 1]",
                  "color": "grayscale" if channels == 1 else "RGB",
                  "resize": {"mode": saved.resize, "how": RESIZE_HOW.get(saved.resize, "unknown")}},
        "normalization": {"baked_in": True, "mean": saved.description.mean,
                          "std": saved.description.std, "formula": "(x - mean) / std per channel"},
        "output": saved.task.export_output(saved.classes, saved.outputs_log_probs),
        "test_time_augmentation": "none" if saved.tta == "none" else saved.task.export_tta_note(),
        "source": {"run_dir": str(saved.run_dir), "checkpoint": str(saved.checkpoint_path), "epoch": saved.epoch,
                   "model": str(saved.config.model.name)},
        "versions": versions(),
    }


def metadata_path(path: Path) -> Path:
    """model.onnx -> model.onnx.json: a TorchScript and an ONNX export can sit side by side."""
    return path.with_name(path.name + ".json")
