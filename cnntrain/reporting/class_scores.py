"""Precision, recall and F1 of one class from its counts: the one definition that summary.json's analysis, the
report page's fallback and the macro-F1 (cnntrain.reporting.metrics) share. Plain Python, so the page, which
imports no torch, uses it too.

F1 = 2TP / (2TP + FP + FN) = 2 hits / (predicted + support), as sklearn's f1_score: a class absent from the test
split but predicted scores 0 (and counts in the macro mean), a class neither present nor predicted has no F1.
"""

from __future__ import annotations

from typing import Any


def class_scores(hits: float, predicted: float, support: float) -> dict[str, Any]:
    """{"precision", "recall", "f1"} of a class with `hits` correct of `predicted` predictions and `support` true
    images; a ratio whose denominator is 0 is None."""
    return {
        "precision": hits / predicted if predicted else None,
        "recall": hits / support if support else None,
        "f1": 2 * hits / (predicted + support) if predicted + support else None,
    }
