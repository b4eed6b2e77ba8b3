"""Out-of-fold predictions: every labelled image's probabilities and embedding from the fold run that did not
train on it (a test image: the mean of all K, none of which saw it), plus one shared embedding space (fold 0's
model) in which images are compared with each other, and each fold's embeddings of its own training images
(what the outlier scores are measured against).

The fold runs are ordinary cnntrain runs (a sweep over dataset.fold); they are read back with
cnntrain.inference.load_run and fed the images their data assembly gave them (cnntrain.auditing.keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from cnntrain.auditing.keys import Key, fold_parts, keyed, refuse_streams
from cnntrain.config.schema import DatasetConfig, section
from cnntrain.data.containers import SourceSplit, as_container
from cnntrain.data.loading import describe_data
from cnntrain.data.sources import source_for
from cnntrain.errors import UserError
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.load import SavedRun, load_run

BATCH = 256
PER_FOLD = ("fold", "mean", "std")  # dataset keys that differ between the folds of one sweep


@dataclass
class Predictions:
    """Every audited image, in one order: the pool (fold 0's held-out images, then fold 1's, ...), then test."""

    keys: list[Key]
    splits: list[str]  # train / val (the split its source gave it) or test
    labels: torch.Tensor  # int64 [N], or multi-hot [N, K]
    probs: torch.Tensor  # float32 [N, K]: out of fold
    embeddings: torch.Tensor  # float32 [N, D] in fold 0's model's space (for comparing images)
    images: torch.Tensor  # uint8 [N, C, H, W] as the runs saw them (thumbnails, hashes, odd-file checks)
    fold_of: list[int]  # the fold that held each image out (-1: test)
    own: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = field(default_factory=list)
    """Per fold: (its training images' embeddings, its held-out images' embeddings, their indices here), each in
    that fold model's space: what an outlier is scored in."""
    classes: list[str] = field(default_factory=list)
    task: str = "single"
    data: DatasetConfig | None = None
    seconds_per_fold: list[float] = field(default_factory=list)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2


def fold_of_run(saved: SavedRun, run_dir: Path) -> tuple[int, int]:
    """(K, i) of a fold run, from its saved config; a run that is not one fold of K is refused."""
    folds = OmegaConf.select(saved.config, "dataset.folds")
    fold = OmegaConf.select(saved.config, "dataset.fold")
    if not isinstance(folds, int) or not isinstance(fold, int):
        raise UserError(
            f"{run_dir} is not a fold run (its dataset.folds/dataset.fold are {folds}/{fold}); the audit reads the "
            f"runs of one K-fold sweep (-m dataset.folds=K dataset.fold=0,...,K-1)"
        )
    return folds, fold


def load_folds(run_dirs: list[Path]) -> list[SavedRun]:
    """The K fold runs, ordered by fold; they must be folds 0..K-1 of one K on one dataset."""
    runs: dict[int, SavedRun] = {}
    ks = set()
    for run_dir in run_dirs:
        saved = load_run(run_dir, "best")
        folds, fold = fold_of_run(saved, run_dir)
        ks.add(folds)
        runs[fold] = saved
    if len(ks) != 1 or sorted(runs) != list(range(next(iter(ks)))):
        raise UserError(
            f"the runs given are folds {sorted(runs)} of K={sorted(ks)}; the audit needs every fold 0..K-1 of one K "
            f"(a finished run for each)"
        )
    first = OmegaConf.to_container(runs[0].config.dataset, resolve=True)
    for fold, saved in runs.items():
        other = OmegaConf.to_container(saved.config.dataset, resolve=True)
        if _data_keys(other) != _data_keys(first):
            raise UserError(
                f"fold {fold}'s run ({saved.run_dir}) read other data than fold 0's; one sweep's folds only"
            )
    return [runs[i] for i in range(len(runs))]


def _data_keys(dataset: Any) -> dict[str, Any]:
    """What names the data in a fold run's dataset section (each fold measures its own mean and std)."""
    return {k: v for k, v in dataset.items() if k not in PER_FOLD}


def predict_folds(run_dirs: list[Path]) -> Predictions:
    """Read the data the fold runs read, then run each fold's model on the images it held out (and the test
    images, and its own training images for their embeddings)."""
    import time

    runs = load_folds(run_dirs)
    saved0 = runs[0]
    data = replace(section(saved0.config.dataset, DatasetConfig), mean=None, std=None, fold=None)
    refuse_streams(data)
    seed = int(OmegaConf.select(saved0.config, "seed", default=42))
    source = source_for(data)
    description = describe_data(data)
    read = source.read(description)
    keys = source.leave_out(keyed(source, description, read))  # split/index keys as the source numbers them
    parts = fold_parts(data, source.leave_out(read), keys, seed, len(runs))
    order = [k for part in parts for k in part.val_keys] + parts[0].test_keys
    index = {k.key: i for i, k in enumerate(order)}
    n, test_n = len(order), len(parts[0].test_keys)
    classes = list(saved0.classes)
    probs = torch.zeros(n, len(classes))
    labels = torch.cat([*(p.val.labels for p in parts), parts[0].test.labels])
    fold_of = [i for i, p in enumerate(parts) for _ in p.val_keys] + [-1] * test_n
    splits = [k.origin for p in parts for k in p.val_keys] + ["test"] * test_n
    embeddings: torch.Tensor | None = None
    images: torch.Tensor | None = None
    own, seconds = [], []
    for fold, (saved, part) in enumerate(zip(runs, parts, strict=True)):
        started = time.perf_counter()
        model = Outputs(saved)
        val_at = [index[k.key] for k in part.val_keys]
        val_probs, val_emb, val_img = model.run(part.val)
        probs[val_at] = val_probs
        test_probs, test_emb, test_img = model.run(part.test)
        probs[n - test_n :] += test_probs / len(runs)
        _, train_emb, train_img = model.run(part.train)
        own.append((train_emb, val_emb, val_at))
        if fold == 0:
            embeddings, images = _gather(
                n,
                index,
                [
                    (part.val_keys, val_emb, val_img),
                    (part.train_keys, train_emb, train_img),
                    (part.test_keys, test_emb, test_img),
                ],
            )
            own.append((train_emb, test_emb, list(range(n - test_n, n))))
        seconds.append(time.perf_counter() - started)
    assert embeddings is not None and images is not None
    return Predictions(
        keys=order,
        splits=splits,
        labels=labels.cpu(),
        probs=probs,
        embeddings=embeddings,
        images=images,
        fold_of=fold_of,
        own=own,
        classes=classes,
        task=description.task,
        data=data,
        seconds_per_fold=seconds,
    )


def _gather(n: int, index: dict[str, int], pieces: list[tuple[list[Key], torch.Tensor, torch.Tensor]]) -> Any:
    """Embeddings and images of every image, in the audit's order, from fold 0's passes over its parts."""
    emb = torch.zeros(n, pieces[0][1].shape[1])
    images = torch.zeros(n, *pieces[0][2].shape[1:], dtype=torch.uint8)
    for keys, e, img in pieces:
        at = [index[k.key] for k in keys]
        emb[at], images[at] = e, img
    return emb, images


class Outputs:
    """One fold model: probabilities (the task's head) and the penultimate layer's output (the input of the last
    Linear layer, flattened; the outputs themselves for a model without one) for a split's images."""

    def __init__(self, saved: SavedRun) -> None:
        self.classifier = ImageClassifier(saved)
        self.task = saved.task
        linears = [m for m in saved.model.modules() if isinstance(m, nn.Linear)]
        self.layer: nn.Module | None = linears[-1] if linears else None

    @torch.inference_mode()
    def run(self, split: SourceSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(probabilities [n, K], embeddings [n, D], uint8 images [n, C, H, W]) of the split, in its order."""
        seen: list[torch.Tensor] = []
        hook = None
        if self.layer is not None:
            hook = self.layer.register_forward_hook(lambda m, inp, out: seen.append(inp[0].flatten(1).float().cpu()))
        probs, outs, images = [], [], []
        try:
            batches = as_container(split.images).batches(
                split.labels,
                BATCH,
                shuffle=False,
                generator=None,
                drop_last=False,
                rank=0,
                world=1,
                sampler="shuffle",
                start=0,
            )
            for batch, _ in batches:
                out = self.classifier(batch)
                probs.append(self.task.probabilities(out).float().cpu())
                outs.append(out.flatten(1).float().cpu())
                images.append(batch.cpu())
        finally:
            if hook is not None:
                hook.remove()
        if not probs:
            k = len(self.classifier.classes)
            return torch.zeros(0, k), torch.zeros(0, 1), torch.zeros(0, *self.classifier.input_shape, dtype=torch.uint8)
        embeddings = torch.cat(seen) if seen else torch.cat(outs)
        return torch.cat(probs), embeddings, torch.cat(images)
