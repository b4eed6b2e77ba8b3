"""An exported model file put to work without torch: its JSON contract read and checked, images decoded as the
run decoded them, the file run by its own runtime, the answers shaped as `cnntrain-predict RUN_DIR --json` shapes
them.

ONNX files run on ONNX Runtime and OpenVINO IR (.xml + .bin) on OpenVINO, with numpy and Pillow only: image files
go through cnntrain.data.images.decode_array, the very function the run's own images went through, so the pixels
are identical. A `.pt2` (torch.export) file runs through torch, imported only for it. The contract is data another
person may have written: read bounded, never executed, every field checked before it is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnntrain.config.names import RESIZE_MODES
from cnntrain.data.images import decode_array
from cnntrain.errors import UserError
from cnntrain.files import open_regular

MODEL_FILES = {".onnx": "onnx", ".xml": "openvino", ".pt2": "pt2"}  # what predict and eval take, by suffix
PROBABILITIES = "probabilities"
MAX_CONTRACT_BYTES = 4 << 20  # a contract is a few kB; a class list of 100k names still fits
EXTRAS = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}  # format -> (module, extra)


def contract_path(model: Path) -> Path:
    """model.onnx -> model.onnx.json (the JSON cnntrain-export writes beside every file)."""
    return model.with_name(model.name + ".json")


def model_format(path: Path) -> str:
    """The export format a file's suffix names; a UserError for another kind of file."""
    fmt = MODEL_FILES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"{path}: not an exported model file; expected one of {', '.join(MODEL_FILES)} (a file "
            f"cnntrain-export wrote) or a run directory"
        )
    return fmt


@dataclass
class Contract:
    """What the exported file's JSON promises, checked: input size, resize, classes, output kind, thresholds."""

    fmt: str
    input_shape: tuple[int, int, int]
    resize: str
    classes: list[str]
    kind: str  # logits, log_probabilities or probabilities (a sigmoid per label)
    thresholds: list[float] | None  # a multi-label export's, one per label
    raw: dict[str, Any]


def read_contract(model: Path) -> Contract:
    """The JSON beside `model`, checked against the file; one line naming what is missing or does not match."""
    fmt = model_format(model)
    if not model.is_file():
        raise UserError(
            f"model file not found: {model}"
            if not model.exists()
            else f"{model}: not a regular file; expected a file cnntrain-export wrote"
        )
    path = contract_path(model)
    try:
        with open_regular(path) as handle:
            text = handle.read(MAX_CONTRACT_BYTES + 1)
    except FileNotFoundError:
        raise UserError(
            f"{model}: its contract {path.name} is missing; predict from a file cnntrain-export wrote, "
            f"with the JSON it wrote beside it"
        ) from None
    if len(text) > MAX_CONTRACT_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONTRACT_BYTES >> 20} MiB; not a contract cnntrain-export wrote")
    try:
        raw = json.loads(text)
        contract = _checked(raw, fmt)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise UserError(f"{path}: not a contract cnntrain-export wrote ({err})") from None
    if raw.get("file") != model.name:
        raise UserError(
            f"{path}: describes {raw.get('file')!r}, not {model.name!r}; keep each export beside its own "
            f"JSON (renamed files need their JSON renamed too)"
        )
    if contract.fmt != fmt:
        raise UserError(f"{path}: describes a {contract.fmt!r} export, but {model.name} is a {fmt!r} file")
    return contract


def _checked(raw: Any, fmt: str) -> Contract:
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    shape = raw["input"]["shape"][1:]
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 8192 for d in shape):
        raise ValueError(f"input.shape {raw['input']['shape']!r} is not [batch, C, H, W]")
    if shape[0] not in (1, 3):
        raise ValueError(f"input has {shape[0]} channels, not 1 or 3")
    resize = raw["input"]["resize"]["mode"]
    if resize not in RESIZE_MODES:
        raise ValueError(f"input.resize.mode {resize!r} is not one of {', '.join(RESIZE_MODES)}")
    output = raw["output"]
    kind = output["kind"]
    if kind not in ("logits", "log_probabilities", PROBABILITIES):
        raise ValueError(f"output.kind {kind!r} is not logits, log_probabilities or probabilities")
    classes = output["labels"] if kind == PROBABILITIES else output["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError("the class names are not a list of strings")
    thresholds = None
    if kind == PROBABILITIES:
        thresholds = [output["thresholds"][name] for name in classes]
        if not all(isinstance(t, float) and 0.0 < t < 1.0 for t in thresholds):
            raise ValueError("output.thresholds are not probabilities in (0, 1), one per label")
    return Contract(
        fmt=str(raw.get("format", fmt)),
        input_shape=(shape[0], shape[1], shape[2]),
        resize=resize,
        classes=list(classes),
        kind=kind,
        thresholds=thresholds,
        raw=raw,
    )


def load_runner(model: Path, fmt: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """float32 [N, C, H, W] in [0, 1] -> the file's outputs, run by the format's runtime on the CPU (on `threads`
    threads, None: the runtime's default, every core); a UserError naming the extra when that runtime is not
    installed, and for a file the runtime cannot read."""
    try:
        if fmt == "onnx":
            return _onnx_runner(model, threads)
        if fmt == "openvino":
            return _openvino_runner(model, threads)
        return _pt2_runner(model, threads)
    except ImportError as err:
        module, extra = EXTRAS.get(fmt, ("torch", "torch"))
        if err.name is not None and err.name.split(".")[0] != module:
            raise
        raise UserError(f"running a {fmt} file needs {module}: pip install 'cnntrain[{extra}]'") from None
    except (RuntimeError, ValueError, OSError) as err:  # the runtimes' own errors for a damaged or foreign file
        message = str(err).strip().splitlines()
        raise UserError(f"{model}: {fmt} cannot read it ({message[-1] if message else type(err).__name__})") from None


def _onnx_runner(model: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort  # the onnx extra: imported only for an ONNX file

    options = ort.SessionOptions()
    if threads is not None:  # a server's share of the cores: its threads sleep, not spin, between calls
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's errors are its own types (Fail, InvalidGraph, ...)
        raise RuntimeError(str(err)) from None
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def _openvino_runner(model: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov  # the openvino extra: imported only for an IR file

    # f32: OpenVINO would otherwise run float layers in bf16 on CPUs that have it, moving the probabilities
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(model), "CPU", config)
    return lambda images: np.asarray(compiled(images)[0])


def _pt2_runner(model: Path, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    import torch  # a .pt2 file is a torch.export program: only torch runs it

    if threads is not None:
        torch.set_num_threads(threads)
    module = torch.export.load(str(model)).module()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(images)).numpy()

    return run


def load_images(paths: Sequence[Path], input_shape: tuple[int, int, int], resize: str) -> np.ndarray:
    """uint8 [N, C, H, W]: every file decoded and resized as the run's training images were (decode_array)."""
    channels, height, width = input_shape
    return np.stack([decode_array(path, channels, height, width, resize=resize) for path in paths])


def as_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1, the exported files' input (the same division the wrapper's Normalize does)."""
    return images_uint8.astype(np.float32) / np.float32(255.0)


def as_probabilities(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Each class's probability: a softmax of logits or log-probabilities; a multi-label file's outputs as they are."""
    if kind == PROBABILITIES:
        return outputs.astype(np.float32)
    shifted = outputs.astype(np.float32) - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions(probabilities: np.ndarray, contract: Contract, top_k: int) -> list[Any]:
    """Per image, the answer `cnntrain-predict RUN_DIR` gives: the top-k (class, probability) pairs, or for a set of
    labels the labels at or above their thresholds and the top-k labels (cnntrain.training.tasks, in numpy)."""
    classes = contract.classes
    records: list[Any] = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable").tolist()
        if contract.thresholds is None:
            records.append([(classes[k], float(row[k])) for k in order[:top_k]])
            continue
        labels = [_label(classes[k], float(row[k]), contract.thresholds[k]) for k in order]
        records.append({"labels": [item for item in labels if item["predicted"]], "top": labels[:top_k]})
    return records


def _label(name: str, probability: float, threshold: float) -> dict[str, Any]:
    return {"label": name, "probability": probability, "threshold": threshold, "predicted": probability >= threshold}


class ExportedModel:
    """An exported file and its contract, ready to classify image files or uint8 arrays."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = path
        self.contract = read_contract(path)
        self.run = load_runner(path, self.contract.fmt, threads)

    def probabilities(self, images_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
        outputs = [
            self.run(as_float(images_uint8[i : i + batch_size])) for i in range(0, len(images_uint8), batch_size)
        ]
        return as_probabilities(np.concatenate(outputs), self.contract.kind)

    def predictions(self, images_uint8: np.ndarray, top_k: int) -> list[Any]:
        """Per image of a decoded uint8 batch, the task's answer (cnntrain.inference.answers makes it JSON)."""
        return predictions(self.probabilities(images_uint8), self.contract, top_k)

    def images(self, paths: Sequence[Path]) -> np.ndarray:
        """uint8 [N, C, H, W] from image files, decoded as the run decoded its own."""
        return load_images(paths, self.contract.input_shape, self.contract.resize)

    def predict(self, paths: Sequence[Path], top_k: int) -> list[Any]:
        return self.predictions(self.images(paths), top_k)
