"""An exported file checked against the eager model before it is kept, on the run's own images.

The images come from the run's data as the run loads it (cnntrain.data.loading with the saved config): a bounded
number of its test split to compare the file's probabilities with the eager wrapper's (top-1 agreement, the
largest probability difference, and the test accuracy, or mAP for a set of labels, of both), and a seeded sample
of its training split to calibrate an int8 file on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnntrain.data.containers import TensorSplit
from cnntrain.data.loading import DataBundle, load_data
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.evaluate import apply_overrides, check_saved_config
from cnntrain.inference.load import SavedRun
from cnntrain.inference.runtime import PROBABILITIES, as_float, as_probabilities
from cnntrain.reporting.label_metrics import mean_average_precision

CHECK_IMAGES = 512  # test images an export is compared on: enough to see a flip, quick on a CPU
CALIBRATION_SEED = 0  # the training images an int8 file is calibrated on do not move between exports


def run_data(saved: SavedRun, overrides: Sequence[str] = ()) -> DataBundle:
    """The run's splits, read as the run read them (its saved, validated config; its mean/std), with dataset
    KEY=VALUE `overrides` as cnntrain-eval takes them (another root for the same data)."""
    check_saved_config(saved)
    config = apply_overrides(saved.config, list(overrides))
    return load_data(config.dataset, int(config.seed), "cpu", description=saved.description)


def first_images(split: TensorSplit, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` images of a split (uint8 [N, C, H, W]) and their labels, as numpy."""
    n = min(limit, len(split.labels))
    return np.asarray(split.images[0:n].cpu().numpy()), split.labels[:n].cpu().numpy()


def calibration_images(split: TensorSplit, count: int) -> np.ndarray:
    """float32 [count, C, H, W] in [0, 1]: a seeded sample of the training split."""
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    order = torch.randperm(len(split.labels), generator=generator)[:count].sort().values.tolist()
    return as_float(split.images.at(order).numpy())


def eager_outputs(module: ImageClassifier, images_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The wrapper's outputs (its export head included) for float32 images, as an exported file is given them."""
    with torch.inference_mode():
        return np.concatenate(
            [
                module(torch.from_numpy(as_float(images_uint8[i : i + batch_size]))).numpy()
                for i in range(0, len(images_uint8), batch_size)
            ]
        )


def score(probabilities: np.ndarray, labels: np.ndarray, kind: str) -> tuple[str, float]:
    """(metric name, value in %): top-1 accuracy, or mAP for a set of labels."""
    if kind == PROBABILITIES:
        value = mean_average_precision(torch.from_numpy(probabilities), torch.from_numpy(labels).float())
        return "map", 100.0 * float(value or 0.0)
    return "acc", 100.0 * float((probabilities.argmax(axis=1) == labels).mean())


@dataclass
class Check:
    """How an exported file's answers compare with the eager model's on the same test images."""

    images: int
    top1_agreement: float
    max_probability_difference: float
    metric: str
    eager: float
    exported: float
    label_agreement: float | None = None  # a set of labels: the share of (image, label) decisions that agree

    @property
    def drop_pt(self) -> float:
        return self.eager - self.exported

    def as_json(self) -> dict[str, Any]:
        facts = {
            "split": "test",
            "images": self.images,
            "top1_agreement": self.top1_agreement,
            "max_probability_difference": self.max_probability_difference,
            "metric": self.metric,
            "eager": self.eager,
            "exported": self.exported,
            "drop_pt": self.drop_pt,
        }
        if self.label_agreement is not None:
            facts["label_agreement"] = self.label_agreement
        return facts


def compare(
    run: Callable[[np.ndarray], np.ndarray],
    eager: np.ndarray,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    kind: str,
    thresholds: list[float] | None,
    batch_size: int = 64,
) -> Check:
    """Run the exported file on the images and set its probabilities beside the eager ones."""
    outputs = np.concatenate(
        [run(as_float(images_uint8[i : i + batch_size])) for i in range(0, len(images_uint8), batch_size)]
    )
    ours, theirs = as_probabilities(eager, kind), as_probabilities(outputs, kind)
    metric, eager_score = score(ours, labels, kind)
    label_agreement = None
    if thresholds is not None:
        t = np.asarray(thresholds, dtype=np.float32)
        label_agreement = float(((ours >= t) == (theirs >= t)).mean())
    return Check(
        images=len(images_uint8),
        top1_agreement=float((ours.argmax(1) == theirs.argmax(1)).mean()),
        max_probability_difference=float(np.abs(ours - theirs).max()),
        metric=metric,
        eager=eager_score,
        exported=score(theirs, labels, kind)[1],
        label_agreement=label_agreement,
    )
