"""Multi-label metrics from sigmoid scores [N, K] and multi-hot targets [N, K]: average precision per label
and its mean (mAP), F1 / precision / recall at the decision thresholds (micro and macro), exact-match accuracy
and the Hamming loss; and the per-label thresholds that trainer.threshold=tune picks on the validation split.

Computed once from every score of a split (gathered over the ranks in a data-parallel run, never averaged per
rank), in float64 on the CPU, so they are exact for the scores the model gave. Average precision follows
scikit-learn's average_precision_score: tied scores form one step, no interpolation.
"""

from __future__ import annotations

from typing import Any

import torch

from cnntrain.config.names import LABEL_METRICS, TEST_MAP

NO_POSITIVE_THRESHOLD = 0.5  # threshold=tune: a label without a positive validation image keeps this


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float | None:
    """Sum over the distinct score thresholds of (recall step) x precision; None for a label with no positive."""
    curve = precision_recall_curve(scores, targets)
    if curve is None:
        return None
    precision, recall = curve
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * precision).sum())


def precision_recall_curve(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(precision, recall) at each distinct score, highest first (float64); None without a positive."""
    scores, positive = scores.detach().double().cpu(), targets.detach().cpu() > 0.5
    total = int(positive.sum())
    if total == 0:
        return None
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order].double()
    tp = torch.cumsum(positive, 0)
    last_of_tie = torch.ones_like(scores, dtype=torch.bool)
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    tp, taken = tp[last_of_tie], (torch.arange(1, len(scores) + 1, dtype=torch.float64))[last_of_tie]
    return tp / taken, tp / total


def multilabel_metrics(
    scores: torch.Tensor, targets: torch.Tensor, thresholds: list[float], classes: list[str]
) -> tuple[dict[str, float | None], dict[str, dict[str, Any]]]:
    """(the LABEL_METRICS by name plus test/acc, each label's ap/f1/precision/recall/support/threshold)."""
    scores, truth = scores.detach().double().cpu(), targets.detach().cpu() > 0.5
    predicted = scores >= torch.tensor(thresholds, dtype=torch.float64)
    tp = (predicted & truth).sum(0).double()
    fp = (predicted & ~truth).sum(0).double()
    fn = (~predicted & truth).sum(0).double()
    aps = [average_precision(scores[:, k], truth[:, k]) for k in range(scores.shape[1])]
    measured = [ap for ap in aps if ap is not None]
    per_label = {}
    for k, name in enumerate(classes):
        per_label[name] = {
            "ap": aps[k],
            "f1": _ratio(2 * tp[k], 2 * tp[k] + fp[k] + fn[k]),
            "precision": _ratio(tp[k], tp[k] + fp[k]),
            "recall": _ratio(tp[k], tp[k] + fn[k]),
            "support": int(truth[:, k].sum()),
            "threshold": float(thresholds[k]),
        }
    seen = (tp + fp + fn) > 0  # macro F1 over the labels in the targets or the predictions (as single-label)
    n = max(1, truth.shape[0])
    values = {
        TEST_MAP: sum(measured) / len(measured) if measured else None,
        "test/micro_f1": _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        "test/macro_f1": float((2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])).mean())
        if bool(seen.any())
        else None,
        "test/precision": _ratio(tp.sum(), tp.sum() + fp.sum()),
        "test/recall": _ratio(tp.sum(), tp.sum() + fn.sum()),
        "test/hamming_loss": float((predicted != truth).double().mean()) if truth.numel() else None,
        "test/acc": float((predicted == truth).all(1).double().sum() / n),
    }
    assert set(LABEL_METRICS) <= set(values)
    return values, per_label


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float | None:
    """mAP alone (the validation split's, each epoch): the mean AP over labels with a positive image."""
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    measured = [ap for ap in aps if ap is not None]
    return sum(measured) / len(measured) if measured else None


def exact_matches(scores: torch.Tensor, targets: torch.Tensor, thresholds: list[float]) -> int:
    """Images whose whole predicted set is their true set."""
    limits = torch.tensor(thresholds, dtype=scores.dtype, device=scores.device)
    return int(((scores >= limits) == (targets > 0.5)).all(1).sum())


def tune_thresholds(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Per label, the score threshold with the best F1 on these images (the lowest such threshold on a tie; the
    midpoint to the next lower score, so a score equal to it is still predicted); 0.5 without a positive."""
    scores, truth = scores.detach().double().cpu(), targets.detach().cpu() > 0.5
    chosen = []
    for k in range(scores.shape[1]):
        column, positive = scores[:, k], truth[:, k]
        total = int(positive.sum())
        if total == 0:
            chosen.append(NO_POSITIVE_THRESHOLD)
            continue
        order = torch.argsort(column, descending=True, stable=True)
        ranked, hits = column[order], torch.cumsum(positive[order].double(), 0)
        last_of_tie = torch.ones_like(ranked, dtype=torch.bool)
        last_of_tie[:-1] = ranked[1:] != ranked[:-1]
        taken = torch.arange(1, len(ranked) + 1, dtype=torch.float64)
        f1 = torch.where(last_of_tie, 2 * hits / (taken + total), -1.0)
        best = int(torch.nonzero(f1 == f1.max())[-1])
        below = float(ranked[best + 1]) if best + 1 < len(ranked) else 0.0
        chosen.append(min(max((float(ranked[best]) + below) / 2, 1e-6), 1 - 1e-6))
    return chosen


def _ratio(top: torch.Tensor, bottom: torch.Tensor) -> float | None:
    return float(top / bottom) if float(bottom) > 0 else None
