"""Export a finished run's model as a self-contained file to ship, check it, and write its JSON contract.

Every format exports the same module: the run's ImageClassifier (cnntrain.inference.classifier) ending in the
task's export head. It takes images as float32 in [0, 1] (TorchScript also takes uint8 0..255), NCHW, any batch
size, and normalises them itself with the run's mean/std; a multi-label model ends in a sigmoid per label and the
JSON holds each label's threshold. One module per format sits beside this one (export_onnx, export_pt2,
export_openvino, export_torchscript); this one dispatches, and keeps a file only after it has been compared
with the eager model on the run's own test images (export_check): a float32 file that disagrees beyond
FP32_TOLERANCE is not kept; an int8 file whose accuracy drops more than the budget is kept and flagged.
cnntrain-export and `Run.export()` both come here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from cnntrain.errors import ConfigError, DataError, UserError, first_line
from cnntrain.files import safe_folder, write_text
from cnntrain.inference import export_check, export_onnx, export_openvino, export_pt2, export_torchscript
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.export_layer import failing_layer, quiet_logs
from cnntrain.inference.load import SavedRun
from cnntrain.inference.runtime import contract_path, load_runner
from cnntrain.reporting.provenance import versions
from cnntrain.reporting.run_dir import RunDir

FORMATS = {"torchscript": ".pt", "pt2": ".pt2", "onnx": ".onnx", "openvino": ".xml"}
EXPORTERS: dict[str, ModuleType] = {
    "torchscript": export_torchscript,
    "pt2": export_pt2,
    "onnx": export_onnx,
    "openvino": export_openvino,
}
INT8_FORMATS = ("onnx", "openvino")
FP32_TOLERANCE = 1e-3  # the largest probability difference a float32 file may show against eager
CALIBRATION = 300  # training images an int8 file is calibrated on, by default
ACCURACY_BUDGET = 0.5  # points of test accuracy (or mAP) an int8 file may lose before it is flagged
RESIZE_HOW = {  # how training fitted an image file to height x width (cnntrain.data.images), for callers to match
    "stretch": "bilinear resize to height x width, aspect ratio ignored",
    "crop": "bilinear resize so the image covers height x width (its shorter side fits), then the centre crop",
    "pad": "bilinear resize so the image fits inside height x width, centred on zeros (black)",
}


def check_options(fmt: str, int8: bool, calibration: int, budget: float) -> None:
    """One line for a format or option the export cannot take, before any model is loaded."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if int8 and fmt not in INT8_FORMATS:
        raise ConfigError(
            f"--int8 with format {fmt}: int8 export is for {' and '.join(INT8_FORMATS)} (post-training "
            f"quantization calibrated on the run's training images)"
        )
    if calibration < 1:
        raise ConfigError(f"--calibration={calibration}: must be >= 1 (training images to calibrate int8 on)")
    if not budget >= 0:
        raise ConfigError(f"--accuracy-budget={budget}: must be >= 0 (points of accuracy or mAP int8 may lose)")
    if fmt == "openvino":
        export_openvino.require(int8)
    else:
        EXPORTERS[fmt].require()


def export_target(run_dir: Path, fmt: str, int8: bool, output: Path | None) -> tuple[Path, Path | None]:
    """Where an export goes, for cnntrain-export and results.Run.export alike: `output` as named, else
    export/model[-int8].EXT in the run directory, whose folders may not link out of the run (the root returned is
    what cnntrain.files.safe_folder holds the write to)."""
    if output is not None:
        return output, None
    return RunDir(run_dir).export(("-int8" if int8 else "") + FORMATS[fmt]), run_dir


def check_output(path: Path, fmt: str) -> list[Path]:
    """Every file the export will write (the model, an IR's .bin, the JSON); a UserError for a folder or a link."""
    files = [path, *(export_openvino.sidecars(path) if fmt == "openvino" else []), contract_path(path)]
    for file in files:
        if file.is_symlink():
            raise UserError(
                f"{file} is a symbolic link; cnntrain-export does not write through links (remove it, or "
                f"choose another --output)"
            )
        if file.is_dir():
            raise UserError(f"{file} is a folder; --output names the model file to write (e.g. {file / path.name})")
    return files


def export_run(
    saved: SavedRun,
    fmt: str,
    path: Path,
    *,
    root: Path | None = None,
    int8: bool = False,
    calibration: int = CALIBRATION,
    accuracy_budget: float = ACCURACY_BUDGET,
    say: Callable[[str], None] = lambda line: None,
    overrides: Sequence[str] = (),
) -> Path:
    """Write the export and its JSON contract (contract_path) inside `root` (the run directory, for the default
    export/ folder: one that links out of it is refused), once it has been checked against the eager model on the
    run's test images (dataset KEY=VALUE `overrides` say where its data is now); return the export's path. `say`
    gets the one-line notices (fallbacks, clamps, flags)."""
    check_options(fmt, int8, calibration, accuracy_budget)
    files = check_output(path, fmt)
    safe_folder(path.parent, root)
    module = ImageClassifier(saved, export_head=True).cpu()
    data = export_check.run_data(saved, overrides)
    images, labels = export_check.first_images(data.test, export_check.CHECK_IMAGES)
    if not len(images):
        raise DataError(f"the run's test split ({saved.config.dataset.name}) has no images to check the export on")
    eager = export_check.eager_outputs(module, images)
    kind = "probabilities" if saved.thresholds is not None else "logits"
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    try:
        staged = staging / path.name
        example = torch.rand(2, *saved.input_shape)
        step = "export"
        try:
            with quiet_logs():
                facts = {
                    "precision": "int8" if int8 else "float32",
                    **EXPORTERS[fmt].write(module, example, staged, say),
                }
                step = "int8"
                if int8:
                    facts["int8"] = quantize(fmt, staged, data.train, calibration, say)
        except UserError:
            raise
        except Exception as err:  # torch.export, onnxscript, OpenVINO and NNCF each raise their own types
            with quiet_logs():
                layer = None if step == "int8" else failing_layer(module, example, _attempt(fmt), FORMATS[fmt], err)
            raise UserError(
                f"the {fmt} export{' (int8)' if int8 else ''} cannot take "
                f"{f'layer {layer} of ' if layer else ''}model {saved.config.model.name!r}: "
                f"{first_line(err)} (another --format may)"
            ) from None
        check = export_check.compare(
            load_runner(staged, fmt) if fmt != "torchscript" else export_torchscript.runner(staged),
            eager,
            images,
            labels,
            kind,
            saved.thresholds,
        )
        judge(fmt, check, facts, accuracy_budget, say)
        for file in files[:-1]:
            os.replace(staging / file.name, file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_text(
        contract_path(path),
        json.dumps({**metadata(saved, fmt, path), **facts, "check": check.as_json()}, indent=2) + "\n",
    )
    return path


def _attempt(fmt: str) -> Callable[[torch.nn.Module, torch.Tensor, Path], Any]:
    """One layer through the format's own exporter, quietly: what failing_layer bisects with."""
    return lambda layer, example, path: EXPORTERS[fmt].write(layer, example, path, lambda line: None)


def quantize(fmt: str, staged: Path, train: Any, calibration: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Replace the staged float32 file by its int8 version, calibrated on `calibration` training images (all of
    them, with a notice, when the split has fewer)."""
    available = len(train.labels)
    if calibration > available:
        say(f"--calibration {calibration}: the training split has {available} images; calibrating on all {available}")
        calibration = available
    fp32 = staged.with_name("fp32" + staged.suffix)
    os.replace(staged, fp32)
    for sidecar in export_openvino.sidecars(staged) if fmt == "openvino" else []:
        os.replace(sidecar, fp32.with_suffix(sidecar.suffix))
    facts = EXPORTERS[fmt].quantize(fp32, staged, export_check.calibration_images(train, calibration))
    return {**facts, "calibration_images": calibration, "calibration_split": "train"}


def judge(
    fmt: str, check: export_check.Check, facts: dict[str, Any], budget: float, say: Callable[[str], None]
) -> None:
    """A float32 file that disagrees is refused; an int8 file over the accuracy budget is flagged, in one line."""
    if "int8" not in facts:
        if check.max_probability_difference > FP32_TOLERANCE:
            raise UserError(
                f"the {fmt} export differs from the eager model by up to "
                f"{check.max_probability_difference:.2g} in a probability on {check.images} test images "
                f"(tolerance {FP32_TOLERANCE:g}); not kept"
            )
        return
    within = check.drop_pt <= budget
    facts["int8"].update(accuracy_budget_pt=budget, within_budget=within)
    if not within:
        say(
            f"warning: the int8 {fmt} file's test {check.metric} is {check.exported:.2f}%, {check.drop_pt:.2f} pt "
            f"below eager's {check.eager:.2f}% (budget {budget:g} pt); written, and flagged in its JSON"
        )


def metadata(saved: SavedRun, fmt: str, path: Path) -> dict[str, Any]:
    """The contract of the exported file, for whoever loads it without cnntrain."""
    channels, height, width = saved.input_shape
    return {
        "file": path.name,
        "format": fmt,
        "files": [p.name for p in [path, *(export_openvino.sidecars(path) if fmt == "openvino" else [])]],
        "input": {
            "name": "images",
            "layout": "NCHW",
            "shape": ["batch", channels, height, width],
            "dtype": "float32 or uint8" if fmt == "torchscript" else "float32",
            "range": "[0, 1] (uint8 0..255 is divided by 255)" if fmt == "torchscript" else "[0, 1]",
            "color": "grayscale" if channels == 1 else "RGB",
            "resize": {"mode": saved.resize, "how": RESIZE_HOW.get(saved.resize, "unknown")},
        },
        "normalization": {
            "baked_in": True,
            "mean": saved.description.mean,
            "std": saved.description.std,
            "formula": "(x - mean) / std per channel",
        },
        "output": saved.task.export_output(saved.classes, saved.outputs_log_probs),
        "test_time_augmentation": "none" if saved.tta == "none" else saved.task.export_tta_note(),
        "source": {
            "run_dir": str(saved.run_dir),
            "checkpoint": str(saved.checkpoint_path),
            "epoch": saved.epoch,
            "model": str(saved.config.model.name),
        },
        "versions": versions(),
    }


def metadata_path(path: Path) -> Path:
    """model.onnx -> model.onnx.json: exports of several formats can sit side by side."""
    return contract_path(path)
