"""The model a server answers with: a run's checkpoint (its ImageClassifier) or an exported file (ExportedModel),
chosen from what the user named, opened the same way in the command (to refuse a bad file before the port opens)
and in each inference worker, and answering through cnntrain.inference.answers, as cnntrain-predict --json does.

Only the eager path imports torch; an ONNX or OpenVINO file is served without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnntrain.errors import ConfigError, UserError
from cnntrain.inference.answers import answers
from cnntrain.inference.runtime import MODEL_FILES, ExportedModel, model_format
from cnntrain.version import __version__

EAGER = "eager"
RUN_FORMATS = {  # --format for a run directory -> the file cnntrain-export wrote into RUN_DIR/export/
    "onnx": "model.onnx",
    "onnx-int8": "model-int8.onnx",
    "openvino": "model.xml",
    "openvino-int8": "model-int8.xml",
    "pt2": "model.pt2",
}
FORMATS = (EAGER, *RUN_FORMATS)


@dataclass(frozen=True)
class ModelSource:
    """What to serve, as plain data (it travels to the inference workers): a run directory (eager: its checkpoint)
    or an exported file, with its format."""

    path: Path
    fmt: str  # eager, or the exported file's format (onnx, openvino, pt2)
    checkpoint: str = "best"
    device: str = "cpu"


def model_source(target: Path, fmt: str | None, checkpoint: str = "best", device: str = "cpu") -> ModelSource:
    """RUN_DIR (eager, or --format's file in RUN_DIR/export/) or MODEL_FILE; a UserError for anything else."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if target.is_dir():
        if fmt in (None, EAGER):
            return ModelSource(target, EAGER, checkpoint, device)
        path = target / "export" / RUN_FORMATS[fmt]
        if not path.is_file():
            raise UserError(
                f"{target} has no export/{RUN_FORMATS[fmt]}; write it with `cnntrain-export {target} --format "
                f"{fmt.removesuffix('-int8')}{' --int8' if fmt.endswith('-int8') else ''}`, or serve the checkpoint "
                f"(--format eager)"
            )
        return _exported(path, checkpoint, device)
    if target.suffix.lower() not in MODEL_FILES:
        raise UserError(
            f"{target}: not a run directory nor an exported model file ({', '.join(MODEL_FILES)}, with the JSON "
            f"cnntrain-export wrote beside it)"
            if target.exists()
            else f"run directory or model file not found: {target}"
        )
    if fmt is not None and fmt.removesuffix("-int8") != model_format(target):
        raise ConfigError(f"--format={fmt}: {target.name} is a {model_format(target)} file; drop --format")
    return _exported(target, checkpoint, device)


def _exported(path: Path, checkpoint: str, device: str) -> ModelSource:
    for flag, given in (("--checkpoint", checkpoint != "best"), ("--device", device != "cpu")):
        if given:
            raise ConfigError(f"{flag} is for serving a run's checkpoint; {path.name} is an exported file: drop {flag}")
    return ModelSource(path, model_format(path))


class LoadedModel:
    """The served model, opened: its input size and resize (how requests are decoded), what /metadata shows, and
    `answer` (a decoded uint8 batch -> cnntrain-predict --json's records)."""

    def __init__(self, source: ModelSource, threads: int | None = None) -> None:
        self.source = source
        if source.fmt == EAGER:
            if threads is not None:
                import torch  # the eager path only

                torch.set_num_threads(threads)
            self._open_run(source)
        else:
            self._open_file(source, threads)

    def _open_run(self, source: ModelSource) -> None:
        import torch  # the eager path only: an exported file is served without torch

        from cnntrain.device import resolve_device
        from cnntrain.inference.classifier import ImageClassifier
        from cnntrain.inference.load import load_run
        from cnntrain.reporting.run_dir import RunDir, read_summary

        saved = load_run(source.path, source.checkpoint, resolve_device(source.device))
        self._model: Any = ImageClassifier(saved)
        self._as_input = torch.from_numpy
        self.input_shape = tuple(saved.input_shape)
        self.resize = saved.resize
        self.classes = list(saved.classes)
        self.thresholds = saved.thresholds
        git = read_summary(RunDir(source.path).summary_json).get("git")
        self.facts = {
            "normalization": {"mean": saved.description.mean, "std": saved.description.std},
            "test_time_augmentation": saved.tta,
            "checkpoint": str(saved.checkpoint_path),
            "epoch": saved.epoch,
            "commit": git.get("commit") if isinstance(git, dict) else None,
        }

    def _open_file(self, source: ModelSource, threads: int | None) -> None:
        model = ExportedModel(source.path, threads)
        self._model = model
        self._as_input = lambda images: images
        contract = model.contract
        self.input_shape = contract.input_shape
        self.resize = contract.resize
        self.classes = list(contract.classes)
        self.thresholds = contract.thresholds
        raw = contract.raw
        self.facts = {
            "normalization": raw.get("normalization"),
            "test_time_augmentation": raw.get("test_time_augmentation"),
            "exported_from": raw.get("source"),
            "commit": None,  # an exported file names its run's folder, which this server does not read
        }

    def answer(self, images_uint8: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Per image of a uint8 [N, C, H, W] batch, the record cnntrain-predict --json prints for it."""
        return answers(self._model, self._as_input(images_uint8), top_k)

    def metadata(self, top_k: int) -> dict[str, Any]:
        """GET /metadata: what a caller needs to know to send images and read the answers."""
        channels, height, width = self.input_shape
        facts = dict(self.facts)
        return {
            "format": self.source.fmt,
            "model": self.source.path.name,
            "task": "single" if self.thresholds is None else "multilabel",
            "classes": self.classes,
            "thresholds": None if self.thresholds is None else dict(zip(self.classes, self.thresholds)),
            "top_k": top_k,
            "input": {"channels": channels, "height": height, "width": width},
            "preprocessing": {
                "decoder": "cnntrain.data.images (EXIF orientation, 16-bit scaled, transparency on black)",
                "color": "grayscale" if channels == 1 else "RGB",
                "resize": self.resize,
                "normalization": facts.pop("normalization"),
                "test_time_augmentation": facts.pop("test_time_augmentation"),
            },
            "cnntrain_version": __version__,
            **facts,
        }
