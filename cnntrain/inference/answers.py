"""The JSON answer for a batch of decoded images: what `cnntrain-predict --json` prints and `cnntrain-serve`
sends, made by one function so the two never drift apart.

The model is the run's ImageClassifier (images a uint8 tensor) or an exported file's ExportedModel (images a uint8
array): both answer `predictions(images, top_k)` with the task's shape (cnntrain.training.tasks), and this module
turns that into plain JSON records. It imports neither torch nor numpy, so an exported file's path stays torch-free.
"""

from __future__ import annotations

from typing import Any, Protocol


class Answering(Protocol):
    """What answers: ImageClassifier (cnntrain.inference.classifier) or ExportedModel (cnntrain.inference.runtime)."""

    def predictions(self, images: Any, top_k: int) -> list[Any]: ...


def answers(model: Answering, images: Any, top_k: int) -> list[dict[str, Any]]:
    """Per image of `images` (uint8 [N, C, H, W], already decoded and resized as the run's images were), one JSON
    record: `{"top": [{"class", "probability"}, ...]}` for one class per image, most likely first; for a set of
    labels `{"labels": [...], "top": [...]}`, each item with its label, probability, threshold and `predicted`."""
    return [record(result) for result in model.predictions(images, top_k)]


def record(result: Any) -> dict[str, Any]:
    """One image's task answer as JSON: a multi-label answer is already a record; top-k pairs become one."""
    if isinstance(result, dict):
        return dict(result)
    return {"top": [{"class": name, "probability": probability} for name, probability in result]}
