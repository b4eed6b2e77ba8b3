"""Splits, folds and balanced draws of multi-label data (multi-hot labels [N, K]).

The stratification is iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011, as in scikit-multilearn's
IterativeStratification of order 1): the label with the fewest images still to place goes first, each of its
images to the part that still wants the most of that label (ties: the part that wants the most images, then a
seeded coin), so rare labels are spread before common ones fill the parts. Parts have exactly the asked sizes:
a part that is full takes no more images. Images without a label are dealt last to the parts still short.
"""

from __future__ import annotations

import torch


def stratified_parts(labels: torch.Tensor, sizes: list[int], generator: torch.Generator) -> torch.Tensor:
    """Each image's part (int64 [N]): len(sizes) parts of exactly those sizes (summing to N), every label spread
    over them in proportion to their sizes."""
    hot = labels.cpu() > 0.5
    n, k = hot.shape
    order = torch.randperm(n, generator=generator)  # the seeded order images are taken in
    hot = hot[order]
    share = torch.tensor(sizes, dtype=torch.float64) / max(1, n)
    wants = torch.tensor(sizes, dtype=torch.float64)  # images each part still takes
    wants_label = share.unsqueeze(1) * hot.sum(0).double().unsqueeze(0)  # [parts, K]: each label's due share
    part = torch.full((n,), -1, dtype=torch.int64)
    left = hot.clone()  # positives not yet placed
    ties = torch.rand(n, len(sizes), generator=generator, dtype=torch.float64) * 1e-6
    while bool(left.any()):
        remaining = left.sum(0)
        label = int(torch.where(remaining > 0, remaining, n + 1).argmin())
        for i in left[:, label].nonzero().squeeze(1).tolist():
            open_parts = wants > 0
            score = torch.where(open_parts, wants_label[:, label] * 1e6 + wants + ties[i], -torch.inf)
            chosen = int(score.argmax())
            part[i] = chosen
            wants[chosen] -= 1
            wants_label[chosen] -= hot[i].double()
            left[i] = False
    for i in (part < 0).nonzero().squeeze(1).tolist():  # images with no label
        chosen = int(torch.where(wants > 0, wants + ties[i], -torch.inf).argmax())
        part[i] = chosen
        wants[chosen] -= 1
    placed = torch.empty_like(part)
    placed[order] = part
    return placed


def fold_sizes(n: int, folds: int) -> list[int]:
    """K fold sizes that differ by at most one image."""
    return [n // folds + (1 if f < n % folds else 0) for f in range(folds)]


def label_counts(labels: torch.Tensor) -> torch.Tensor:
    """Images per label (int64, on the CPU): the positives of each multi-hot column."""
    return (labels.cpu() > 0.5).sum(0).to(torch.int64)


def balanced_draws(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """len(labels) draws with replacement, each image with weight the mean of 1/count over its labels (images
    without a label: 1/their count), so a rare label's images come up about as often as a common one's."""
    hot = (labels.cpu() > 0.5).double()
    counts = hot.sum(0)
    per_label = torch.where(counts > 0, 1.0 / counts.clamp(min=1), 0.0)
    have = hot.sum(1)
    none = int((have == 0).sum())
    weights = torch.where(have > 0, (hot @ per_label) / have.clamp(min=1), 1.0 / max(1, none))
    return torch.multinomial(weights, int(hot.shape[0]), replacement=True, generator=generator)
