"""Why a model fails: views over one table of the test split's predictions.

The test pass with the best weights keeps, per image, the true class, the predicted class, the probability of
the prediction, the probability of the true class and the image's loss (cross-entropy of the true class). Every
view here is a few lines over that table and the confusion matrix made from it, as fastai's interpretation:
the worst mistakes (wrong and confident first), the most confused pairs, precision/recall/F1 per class, and
calibration (expected calibration error over equal-width confidence bins). No view reads an image again;
only the class activation maps of the worst mistakes (cnntrain.models.cam) run the model, on those few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cnntrain.reporting.class_scores import class_scores

MOST_CONFUSED = 10  # pairs of (true, predicted) classes in summary.json and the console table


@dataclass
class Predictions:
    """The test split, image by image (all [N], on the CPU): what the analysis is computed from."""

    labels: torch.Tensor  # int64 true class
    preds: torch.Tensor  # int64 predicted class (argmax)
    probability: torch.Tensor  # float64 probability of the predicted class (the confidence)
    true_probability: torch.Tensor  # float64 probability of the true class
    loss: torch.Tensor  # float64 -log p(true class), computed in log space (no inf from a rounded-off 0)

    @classmethod
    def of(
        cls,
        labels: torch.Tensor,
        preds: torch.Tensor,
        probability: torch.Tensor,
        true_probability: torch.Tensor,
        loss: torch.Tensor,
    ) -> Predictions:
        return cls(
            *(
                t.detach().cpu().to(dtype)
                for t, dtype in (
                    (labels, torch.int64),
                    (preds, torch.int64),
                    (probability, torch.float64),
                    (true_probability, torch.float64),
                    (loss, torch.float64),
                )
            )
        )


def per_image_scores(
    logits: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probability of the prediction, probability of the true class, -log of it) for a batch of outputs, which may
    be logits or log-probabilities alike (log_softmax of log-probabilities changes nothing)."""
    log_probs = logits.float().log_softmax(dim=1)
    picked = log_probs.gather(1, preds.view(-1, 1)).squeeze(1)
    true = log_probs.gather(1, labels.view(-1, 1)).squeeze(1)
    return picked.exp(), true.exp(), -true


def worst_mistakes(table: Predictions, count: int) -> list[int]:
    """Indices of up to `count` wrong predictions, highest loss first (the most confidently wrong), ties broken by
    the index so the order is reproducible."""
    wrong = (table.preds != table.labels).nonzero().squeeze(1)
    if count <= 0 or wrong.numel() == 0:
        return []
    order = sorted(wrong.tolist(), key=lambda i: (-float(table.loss[i]), i))
    return order[:count]


def most_confused(matrix: torch.Tensor, classes: list[str], top: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """The off-diagonal cells of the confusion matrix [true, predicted] with the most images, most first (ties by
    true then predicted class); empty cells are left out."""
    counts = matrix.detach().cpu().to(torch.int64).clone()
    counts.fill_diagonal_(0)
    cells = [(int(counts[t, p]), t, p) for t, p in counts.nonzero().tolist()]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [{"true": classes[t], "predicted": classes[p], "count": n} for n, t, p in cells[:top]]


def per_class(matrix: torch.Tensor, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support (true images) of each class from the confusion matrix [true, predicted];
    a ratio whose denominator is 0 is None (precision of a class never predicted, recall of an absent class),
    and F1 is None only when the class is neither present nor predicted (class_scores: the one definition)."""
    m = matrix.detach().cpu().double()
    tp, predicted, support = m.diagonal(), m.sum(dim=0), m.sum(dim=1)
    out = {}
    for i, name in enumerate(classes):
        hits, pred_n, true_n = float(tp[i]), float(predicted[i]), float(support[i])
        out[name] = {**class_scores(hits, pred_n, true_n), "support": int(true_n)}
    return out


def calibration(table: Predictions, bins: int) -> dict[str, Any]:
    """Expected calibration error over `bins` equal-width bins of confidence (the predicted class's probability):
    ECE = sum over bins of (images in bin / all images) * |accuracy in bin - mean confidence in bin|, as Guo et
    al. 2017. Per bin the mean confidence and accuracy (None for an empty bin) and the count: the reliability
    diagram's data. A bin holds confidences in (lo, hi]; the first also takes 0."""
    confidence = table.probability.clamp(0.0, 1.0)
    correct = (table.preds == table.labels).double()
    which = (confidence * bins).ceil().long().sub(1).clamp(0, bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    conf_sum = torch.bincount(which, weights=confidence, minlength=bins)
    hit_sum = torch.bincount(which, weights=correct, minlength=bins)
    filled = count > 0
    mean_conf = torch.where(filled, conf_sum / count.clamp(min=1), torch.zeros_like(count))
    accuracy = torch.where(filled, hit_sum / count.clamp(min=1), torch.zeros_like(count))
    total = max(1.0, float(count.sum()))
    ece = float(((count / total) * (accuracy - mean_conf).abs()).sum())
    return {
        "ece": ece,
        "bins": bins,
        "confidence": [float(c) if f else None for c, f in zip(mean_conf.tolist(), filled.tolist())],
        "accuracy": [float(a) if f else None for a, f in zip(accuracy.tolist(), filled.tolist())],
        "count": [int(c) for c in count.tolist()],
    }


def analysis_summary(
    table: Predictions, matrix: torch.Tensor, classes: list[str], worst: int, bins: int, cam: dict[str, str] | None
) -> dict[str, Any]:
    """summary.json's "analysis": everything above as plain JSON (the report page renders it)."""
    return {
        "per_class": per_class(matrix, classes),
        "most_confused": most_confused(matrix, classes),
        "calibration": calibration(table, bins),
        "worst_mistakes": [
            {
                "index": i,
                "true": classes[int(table.labels[i])],
                "predicted": classes[int(table.preds[i])],
                "probability": float(table.probability[i]),
                "true_probability": float(table.true_probability[i]),
                "loss": float(table.loss[i]),
            }
            for i in worst_mistakes(table, worst)
        ],
        "cam": cam,
    }
