"""`cnntrain-export RUN_DIR --format torchscript|onnx`: a self-contained model file to ship.

The exported module takes images as float32 in [0, 1] (TorchScript also takes uint8 0..255), NCHW,
and normalises them itself with the run's mean/std, so callers never need the training config.
A JSON file next to the export records the input contract, the classes and where it came from. A multi-label
model's export gives each label's probability (a sigmoid at its end); the JSON adds each label's threshold.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.data.description import DataDescription, Normalize
from cnntrain.errors import UserError
from cnntrain.files import atomic_write, safe_folder, write_text
from cnntrain.reporting.provenance import versions
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.saved_run import SavedRun, load_run

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
ONNX_OPSET = 17


class NormalizedModel(nn.Module):
    """images in [0, 1] (or uint8) -> the run's normalisation -> the trained model (-> a sigmoid per label, for a
    multi-label model: its outputs are each label's probability)."""

    def __init__(self, model: nn.Module, description: DataDescription) -> None:
        super().__init__()
        self.normalize = Normalize(description)
        self.model = model
        self.per_label = description.task == "multilabel"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.model(self.normalize(images))
        if self.per_label:
            outputs = torch.sigmoid(outputs)
        return outputs


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-export", description="Export a trained run to TorchScript or ONNX.")
    p.add_argument("run_dir", type=Path, help="a run directory written by cnntrain")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="torchscript or onnx")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a path to a .pt file")
    p.add_argument("--output", type=Path, default=None,
                   help="file to write (default: RUN_DIR/export/model.pt or model.onnx)")
    return p


def wrap(saved: SavedRun) -> NormalizedModel:
    return NormalizedModel(saved.model.cpu(), saved.description).eval()


def export_torchscript(module: NormalizedModel, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, yet still the loadable format
        scripted = torch.jit.script(module)
        atomic_write(path, lambda tmp: torch.jit.save(scripted, str(tmp)))


def export_onnx(module: NormalizedModel, example: torch.Tensor, path: Path) -> None:
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
        "output": _output(saved),
        "test_time_augmentation": _tta_note(saved.tta, saved.task == "multilabel"),
        "source": {"run_dir": str(saved.run_dir), "checkpoint": str(saved.checkpoint_path), "epoch": saved.epoch,
                   "model": str(saved.config.model.name)},
        "versions": versions(),
    }


def _output(saved: SavedRun) -> dict[str, Any]:
    """What the outputs mean: one class's logits (or log-probabilities), or each label's probability with the
    threshold at which the run predicts it."""
    if saved.task == "multilabel":
        return {"name": "outputs", "kind": "probabilities", "task": "multilabel", "labels": saved.classes,
                "thresholds": dict(zip(saved.classes, saved.thresholds or [])),
                "decision": "a label is predicted when its probability is >= its threshold; any number of labels, "
                            "none included"}
    return {"name": "outputs", "kind": "log_probabilities" if saved.outputs_log_probs else "logits",
            "classes": saved.classes}


RESIZE_HOW = {  # how training fitted an image file to height x width (cnntrain.data.images), for callers to match
    "stretch": "bilinear resize to height x width, aspect ratio ignored",
    "crop": "bilinear resize so the image covers height x width (its shorter side fits), then the centre crop",
    "pad": "bilinear resize so the image fits inside height x width, centred on zeros (black)",
}


def _tta_note(tta: str, multilabel: bool = False) -> str:
    if tta == "none":
        return "none"
    if multilabel:
        return ("the run's metrics averaged each image's logits with its mirror's (trainer.tta=hflip); this file "
                "is one pass: run it on the image and on its left-right mirror and average the logits of the "
                "probabilities, log(p / (1 - p))")
    return ("the run's metrics averaged each prediction with the mirrored image's (trainer.tta=hflip); this file "
            "is one pass: run it on the image and on its left-right mirror and average the log-softmax outputs")


def metadata_path(path: Path) -> Path:
    """model.onnx -> model.onnx.json: a TorchScript and an ONNX export can sit side by side."""
    return path.with_name(path.name + ".json")


def export_run(saved: SavedRun, fmt: str, path: Path, *, root: Path | None = None) -> Path:
    """Write the export and its metadata JSON (metadata_path) inside `root` (the run directory, for the default
    export/ folder: one that links out of it is refused); return the export's path."""
    safe_folder(path.parent, root)
    module = wrap(saved)
    if fmt == "torchscript":
        export_torchscript(module, path)
    else:
        export_onnx(module, torch.rand(1, *saved.input_shape), path)
    write_text(metadata_path(path), json.dumps(metadata(saved, fmt, path), indent=2) + "\n")
    return path


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_args(argv)
    saved = load_run(args.run_dir, args.checkpoint)
    path = args.output or RunDir(args.run_dir).export(FORMATS[args.format])
    export_run(saved, args.format, path, root=None if args.output else args.run_dir)
    print(f"wrote {path} and {metadata_path(path)}")


def main() -> None:
    """Console-script entry point of cnntrain-export."""
    run_command(_main)


if __name__ == "__main__":
    main()
