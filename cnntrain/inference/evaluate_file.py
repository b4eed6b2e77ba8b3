"""`cnntrain-eval RUN_DIR --model PATH`: an exported file tested on the run's test split, beside the eager model.

The file runs on its own runtime (cnntrain.inference.runtime: ONNX Runtime, OpenVINO, torch.export) on every test
image of the run (dataset KEY=VALUE overrides as cnntrain-eval takes them); the answer is the file's accuracy (mAP
for a set of labels), the eager model's, and how often the two agree, the check an export records in its JSON,
now on the whole split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnntrain.errors import UserError
from cnntrain.inference import export_check
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.load import load_run
from cnntrain.inference.runtime import ExportedModel


def evaluate_file(
    run_dir: Path, model_path: Path, overrides: Sequence[str] = (), *, checkpoint: str = "best"
) -> dict[str, Any]:
    """The exported file's check on the run's whole test split, as a dict (the JSON's `check` keys)."""
    saved = load_run(run_dir, checkpoint)
    model = ExportedModel(model_path)
    contract = model.contract
    if contract.classes != saved.classes or contract.input_shape != tuple(saved.input_shape):
        raise UserError(
            f"{model_path}: takes {'x'.join(map(str, contract.input_shape))} images into "
            f"{len(contract.classes)} classes, but {run_dir} was trained on "
            f"{'x'.join(map(str, saved.input_shape))} images of {len(saved.classes)}; evaluate a file "
            f"exported from this run"
        )
    data = export_check.run_data(saved, overrides)
    images, labels = export_check.first_images(data.test, len(data.test.labels))
    eager = export_check.eager_outputs(ImageClassifier(saved, export_head=True).cpu(), images)
    check = export_check.compare(model.run, eager, images, labels, contract.kind, contract.thresholds)
    return {
        "model": str(model_path),
        "format": contract.fmt,
        "precision": contract.raw.get("precision", "float32"),
        **check.as_json(),
    }
