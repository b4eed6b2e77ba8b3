"""What the class-imbalance settings take from the training split: its class counts, the loss's class weights
(trainer.class_weights) and the balanced sampler's draws (trainer.sampler=balanced).

Both work from the split the model trains on (after the validation split or fold is taken out), so a class
that the split leaves without images is refused by name rather than weighted by 1/0 or never drawn.
"""

from __future__ import annotations

from typing import Any

import torch

from cnntrain.config.names import BALANCED
from cnntrain.config.validate import check_class_weights
from cnntrain.data.multilabel_splits import balanced_draws as multilabel_draws
from cnntrain.data.multilabel_splits import label_counts
from cnntrain.errors import DataError


def train_class_weights(trainer: Any, labels: torch.Tensor, classes: list[str]) -> list[float] | None:
    """The loss's class weights for a run that trains on `labels` (None: unweighted), after checking that the
    balanced settings in `trainer` have every class to work with."""
    counts = class_counts(labels, len(classes))
    check_every_class(counts, classes, balanced_settings(trainer))
    return class_weights(trainer.get("class_weights"), counts, classes)


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Images per class (int64, on the CPU), zeros included; of multi-hot labels, the images with each label."""
    if labels.ndim == 2:
        return label_counts(labels)
    return torch.bincount(labels.cpu().to(torch.int64), minlength=num_classes)[:num_classes]


def balanced_settings(trainer: Any) -> list[str]:
    """The settings of `trainer` that need every class in the training split."""
    settings = []
    if trainer.get("class_weights") == BALANCED:
        settings.append(f"trainer.class_weights={BALANCED}")
    if trainer.get("sampler") == BALANCED:
        settings.append(f"trainer.sampler={BALANCED}")
    return settings


def check_every_class(counts: torch.Tensor, classes: list[str], settings: list[str]) -> None:
    """DataError naming the first class without training images, when a balanced setting needs them all."""
    empty = [name for name, count in zip(classes, counts.tolist()) if count == 0]
    if settings and empty:
        raise DataError(
            f"class '{empty[0]}' has no images in the training split, and {' and '.join(settings)} "
            f"needs every class there; add images of '{empty[0]}' or change dataset.val_split "
            f"(or dataset.folds)"
        )


def class_weights(setting: Any, counts: torch.Tensor, classes: list[str]) -> list[float] | None:
    """The loss's weight per class: None (unweighted), balanced (n_train / (classes x count), so the mean
    weight over the training images is 1 and the loss keeps its scale), or the configured list."""
    if setting is None:
        return None
    if setting == BALANCED:
        check_every_class(counts, classes, [f"trainer.class_weights={BALANCED}"])
        total = int(counts.sum())
        return [total / (len(classes) * int(count)) for count in counts.tolist()]
    check_class_weights(setting, len(classes))
    return [float(w) for w in setting]


def balanced_draws(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """len(labels) indices drawn with replacement, each image with probability proportional to 1 / the count
    of its class: a class is drawn uniformly, then one of its images. Two draws per index from the CPU
    `generator`, so the order is the same on every rank and after a resume."""
    if labels.ndim == 2:
        return multilabel_draws(labels, generator)
    labels = labels.cpu()
    n = int(labels.shape[0])
    members = torch.argsort(labels, stable=True)
    present, counts = torch.unique(labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    which = torch.randint(len(present), (n,), generator=generator)
    within = (torch.rand(n, generator=generator, dtype=torch.float64) * counts[which]).long()
    within = torch.minimum(within, counts[which] - 1)
    return members[starts[which] + within]
