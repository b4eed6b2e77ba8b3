"""The seeded train/validation split (random or stratified, or one fold of K), also used to hold out an image
folder's test set."""

from __future__ import annotations

import math
from typing import Any

import torch

from cnntrain.config.names import VAL_STRATEGIES
from cnntrain.data.multilabel_splits import fold_sizes, stratified_parts
from cnntrain.errors import DataError

FRACTION_SALT = 0x5EED_F4AC  # added to the run's seed for dataset.fraction's draw


def split_indices(
    labels: torch.Tensor, val_split: float | int, strategy: str, seed: int, key: str = "dataset.val_split"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train_idx, val_idx): disjoint, together all of range(N), each sorted ascending. `key` is the
    setting that asked for the split (messages name it: the test split of an image folder uses this too)."""
    if strategy not in VAL_STRATEGIES:
        raise DataError(f"dataset.val_strategy '{strategy}' is not allowed; use one of: {', '.join(VAL_STRATEGIES)}.")
    labels = labels.cpu()
    n = int(labels.shape[0])
    n_val = _val_count(val_split, n, key)
    generator = torch.Generator().manual_seed(int(seed))
    if strategy == "random":
        val_idx = torch.randperm(n, generator=generator)[:n_val]
    elif labels.ndim == 2:  # label sets: iterative stratification
        val_idx = (stratified_parts(labels, [n - n_val, n_val], generator) == 1).nonzero().squeeze(1)
    else:
        val_idx = _stratified_val(labels, n_val, generator)
    in_train = torch.ones(n, dtype=torch.bool)
    in_train[val_idx] = False
    return in_train.nonzero().squeeze(1), val_idx.sort().values


def fraction_indices(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Seeded, stratified, sorted indices of round(fraction * N) images (dataset.fraction): each class keeps one
    image, so every class is still trained on, and its share of the rest (largest remainder: within one image).
    The generator is salted apart from the validation split's, so the subset is not tied to that draw."""
    labels = labels.cpu()
    n = int(labels.shape[0])
    classes, counts = torch.unique(labels, return_counts=True)
    wanted = max(len(classes), min(n, math.floor(fraction * n + 0.5)))
    quotas = 1 + _largest_remainder(counts - 1, wanted - len(classes))
    generator = torch.Generator().manual_seed(int(seed) + FRACTION_SALT)
    picks = []
    for cls, quota in zip(classes.tolist(), quotas.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    return torch.cat(picks).sort().values


def fold_indices(labels: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train_idx, val_idx) of K-fold cross-validation: fold `fold` validates, the other folds train.

    Each class's images are shuffled (seeded) and the classes, one after the other, are dealt round-robin to the
    folds, so the K folds are disjoint, cover range(N), differ in size by at most one image, and each holds its
    share of every class to within one image. The same seed gives the same folds to every fold's run. Label
    sets (multi-hot labels) are dealt by iterative stratification (cnntrain.data.multilabel_splits)."""
    labels = labels.cpu()
    n = int(labels.shape[0])
    if folds > n:
        raise DataError(f"dataset.folds={folds} is more than the {n} training images; use at most {n} folds")
    generator = torch.Generator().manual_seed(int(seed))
    if labels.ndim == 2:  # label sets: iterative stratification into K folds
        in_fold = stratified_parts(labels, fold_sizes(n, folds), generator) == fold
        return (~in_fold).nonzero().squeeze(1), in_fold.nonzero().squeeze(1)
    shuffled = []
    for cls in torch.unique(labels).tolist():
        members = (labels == cls).nonzero().squeeze(1)
        shuffled.append(members[torch.randperm(len(members), generator=generator)])
    dealt = torch.cat(shuffled)
    in_val = torch.zeros(n, dtype=torch.bool)
    in_val[dealt[fold::folds]] = True
    return (~in_val).nonzero().squeeze(1), in_val.nonzero().squeeze(1)


def _val_count(val_split: Any, n: int, key: str) -> int:
    """A fraction in (0, 1) or a whole count >= 1; both must leave images on each side."""
    allowed = f"a fraction in (0, 1) or a whole count from 1 to {n - 1} (the split has {n} images)"
    if n < 2:
        raise DataError(f"{key}={val_split} cannot split {n} image(s) in two; the data needs at least 2 images")
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise DataError(f"{key}={val_split!r} is not a number; use {allowed}.")
    if isinstance(val_split, int) and 1 <= val_split < n:
        return val_split
    if isinstance(val_split, int) or not 0.0 < val_split < 1.0:
        raise DataError(f"{key}={val_split} is out of range; use {allowed}.")
    count = math.floor(val_split * n + 0.5)
    if not 1 <= count < n:
        raise DataError(f"{key}={val_split} gives {count} of {n} images to one side; use {allowed}.")
    return count


def _stratified_val(labels: torch.Tensor, n_val: int, generator: torch.Generator) -> torch.Tensor:
    """Each class gives its proportional share of n_val (largest remainder), so it is off by < 1 per class."""
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = _largest_remainder(counts, n_val)
    picks = []
    for cls, quota in zip(classes.tolist(), quotas.tolist()):
        members = (labels == cls).nonzero().squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=generator)[:quota]])
    return torch.cat(picks)


def _largest_remainder(counts: torch.Tensor, total: int) -> torch.Tensor:
    exact = counts.double() * total / counts.sum().double()
    quotas = exact.floor().long()
    short = total - int(quotas.sum())
    order = torch.argsort(exact - quotas.double(), descending=True, stable=True)
    quotas[order[:short]] += 1
    return quotas
