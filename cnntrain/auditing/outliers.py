"""Outliers: images far from everything a fold's model learned (cleanlab's OutOfDistribution on embeddings: the
mean distance to the k nearest training images of that fold, in that fold model's space, as a score in (0, 1]),
and odd files (nearly constant pixels, extreme sizes or aspect ratios).

An image is scored by the fold that held it out, against that fold's training images, so it is never compared
with itself; it is flagged when its score is below the lowest `QUANTILE` of the training images' own scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnntrain.auditing.extra import require
from cnntrain.auditing.keys import Key

QUANTILE = 0.01  # flag what is less typical than the 1% least typical training images
NEIGHBOURS = 10
CONSTANT_STD = 2.0  # pixel standard deviation (0..255) below which an image is nearly constant
MIN_SIDE = 8  # pixels: a file smaller than this on a side is odd
MAX_ASPECT = 4.0  # width / height (or height / width) beyond this is odd


@dataclass
class Outlier:
    index: int
    reason: str  # embedding, constant, size, aspect
    score: float  # embedding: cleanlab's score (low: far); constant: the pixel std; size/aspect: the measure
    detail: str = ""


def embedding_outliers(
    own: list[tuple[torch.Tensor, torch.Tensor, list[int]]], n: int
) -> tuple[list[Outlier], np.ndarray]:
    """(flagged images, every image's score; NaN where none was measured)."""
    outlier = require("cleanlab.outlier")
    scores = np.full(n, np.nan)
    flagged = []
    for train, held, at in own:
        if len(held) == 0 or len(train) < 3:
            continue
        k = min(NEIGHBOURS, len(train) - 1)
        ood = outlier.OutOfDistribution(params={"k": k})
        train_scores = ood.fit_score(features=train.double().numpy(), verbose=False)
        held_scores = ood.score(features=held.double().numpy())
        cut = float(np.quantile(train_scores, QUANTILE))
        for i, s in zip(at, held_scores.tolist(), strict=True):
            scores[i] = s
            if s < cut:
                flagged.append(
                    Outlier(i, "embedding", float(s), f"below {cut:.4f}, the 1% least typical training score")
                )
    return flagged, scores


def odd_files(keys: list[Key], images: torch.Tensor) -> list[Outlier]:
    """Nearly constant images (blank, a solid colour) and files of extreme size or aspect ratio."""
    found = []
    std = images.flatten(1).float().std(dim=1)
    for i, s in enumerate(std.tolist()):
        if s < CONSTANT_STD:
            found.append(Outlier(i, "constant", float(s), f"pixel std {s:.2f} of 255"))
    for i, key in enumerate(keys):
        if key.path is None:
            continue
        size = _size(key)
        if size is None:
            continue
        width, height = size
        if min(width, height) < MIN_SIDE:
            found.append(Outlier(i, "size", float(min(width, height)), f"{width}x{height} pixels"))
        elif max(width, height) / min(width, height) > MAX_ASPECT:
            found.append(Outlier(i, "aspect", max(width, height) / min(width, height), f"{width}x{height} pixels"))
    return found


def _size(key: Key) -> tuple[int, int] | None:
    from cnntrain.data.images import open_image  # Pillow: only for files

    assert key.path is not None
    with open_image(key.path) as image:
        return image.size
