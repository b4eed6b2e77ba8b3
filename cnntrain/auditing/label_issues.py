"""Likely label errors by confident learning (Northcutt et al., 2021) on out-of-fold probabilities: cleanlab's
`find_label_issues` (its multi-label variant for sets of labels) decides which images are flagged, and its label
quality score (self-confidence: the out-of-fold probability of the given label) ranks them, worst first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnntrain.auditing.extra import require

LABEL_SET_SEPARATOR = ";"  # how a set of labels is written in the CSVs and the cleaned label file


@dataclass
class LabelIssue:
    index: int  # into the audit's order (cnntrain.auditing.folds.Predictions)
    given: list[int]  # the given class (one) or label set
    suggested: list[int]  # the most likely class, or the labels at probability >= 0.5
    quality: float  # cleanlab's label quality score in [0, 1]: low is likely wrong
    confidence: float  # the out-of-fold probability of the suggestion (its mean over the set)


def find_issues(labels: torch.Tensor, probs: torch.Tensor) -> tuple[list[LabelIssue], np.ndarray]:
    """(the flagged images, worst first; every image's label quality score)."""
    p = probs.double().clamp(1e-7, 1.0).numpy()
    if labels.ndim == 2:
        return _multilabel(labels, p)
    filter_ = require("cleanlab.filter")
    rank = require("cleanlab.rank")
    given = labels.numpy().astype(int)
    p = p / p.sum(axis=1, keepdims=True)
    quality = rank.get_label_quality_scores(given, p, method="self_confidence")
    flagged = filter_.find_label_issues(given, p, return_indices_ranked_by="self_confidence")
    issues = [
        LabelIssue(int(i), [int(given[i])], [int(p[i].argmax())], float(quality[i]), float(p[i].max())) for i in flagged
    ]
    return issues, quality


def _multilabel(labels: torch.Tensor, p: np.ndarray) -> tuple[list[LabelIssue], np.ndarray]:
    filter_ = require("cleanlab.multilabel_classification.filter")
    rank = require("cleanlab.multilabel_classification.rank")
    sets = [np.flatnonzero(row).tolist() for row in labels.numpy()]
    p = p.clip(1e-7, 1 - 1e-7)
    quality = rank.get_label_quality_scores(sets, p)
    flagged = filter_.find_label_issues(sets, p, return_indices_ranked_by="self_confidence")
    issues = []
    for i in flagged:
        suggested = np.flatnonzero(p[i] >= 0.5).tolist()
        confidence = float(np.where(p[i] >= 0.5, p[i], 1 - p[i]).mean())
        issues.append(LabelIssue(int(i), sets[i], suggested, float(quality[i]), confidence))
    return issues, quality
