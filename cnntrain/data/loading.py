"""A dataset's splits ready for the training device, with the description the model is built from.

By default a split's images live in one uint8 tensor on the target device (MNIST-sized data is ~50 MB, so a
DataLoader with per-sample PIL decoding would only add overhead) and batches are index slices of it; image
files with dataset.in_memory=false, Hugging Face rows and WebDataset shards are read per batch instead. Either
way the split answers the same questions (cnntrain.data.containers) and each batch is normalised on the fly.

`describe_data` answers what the model needs (shape, classes) as cheaply as the dataset allows, after
making sure the files are there; `load_data` reads the splits and completes the description with the
training split's statistics. Either way the data, not the config, decides the input shape and the
classes; a config that states them is checked against the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import SourceSplit, TensorSplit
from cnntrain.data.description import DataDescription, normalize
from cnntrain.data.sources import Source, SourceSplits, source_for
from cnntrain.data.split import fold_indices, fraction_indices, split_indices
from cnntrain.data.streams import split_streams
from cnntrain.errors import DataError

TEST_SPLIT_SEED = 0  # a test set split off an image folder must not move when `seed` changes


@dataclass
class DataBundle:
    """Everything the engine needs from the data: three splits, the description, and its statistics on the device."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    description: DataDescription
    mean: torch.Tensor  # float32 [1, C, 1, 1] on the data's device
    std: torch.Tensor
    layout: str = ""  # one line from the source: what it found and where each split came from
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason) left out: skip_bad_images

    @property
    def classes(self) -> list[str]:
        return self.description.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.description.input_shape

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8, self.mean, self.std)

    def with_stats(self, mean: list[float], std: list[float]) -> DataBundle:
        """The same splits normalised with other statistics (those pretrained weights expect)."""
        description = self.description.with_stats(mean, std)
        mean_t, std_t = description.stats(self.mean.device)
        return DataBundle(self.train, self.val, self.test, description, mean_t, std_t, self.layout, self.skipped)


def describe_data(cfg: DatasetConfig) -> DataDescription:
    """Make sure the files are there (downloading if allowed), then return the input shape and classes
    as cheaply as the source allows (see cnntrain.data.sources.base.Source.describe)."""
    source = source_for(cfg)
    found = source.describe()
    _check_description(cfg, found, source)
    check_task(cfg, found, source)
    if cfg.mean is not None and cfg.std is not None:
        found = found.with_stats(list(cfg.mean), list(cfg.std))  # checked against the images when they are read
    return found


def load_data(
    cfg: DatasetConfig, seed: int, device: torch.device | str = "cpu", description: DataDescription | None = None
) -> DataBundle:
    """Read the source's splits once, take what it lacks from train (seeded) and put every tensor on `device`.

    `description` is what describe_data returned (the preflight passes it on, so the files are checked
    and a folder is scanned once per run); its statistics, when it has them, are used as they are.
    """
    source = source_for(cfg)
    description = description or describe_data(cfg)
    splits = source.leave_out(source.read(description))
    read = DataDescription(tuple(int(d) for d in splits.train.images.shape[1:]), description.classes)
    _check_description(cfg, read, source)
    for split in (splits.train, splits.val, splits.test):
        if split is not None:
            _check_labels(cfg, split.labels, len(description.classes), source)
    train, val, test = assemble(cfg, splits, seed, fraction=False)
    whole = len(train.labels)
    train = keep_fraction(cfg, train, seed)
    device = torch.device(device)

    def on_device(split: SourceSplit) -> TensorSplit:  # multi-hot labels as float32: the targets of BCE
        labels = split.labels.float() if split.labels.ndim == 2 else split.labels
        return TensorSplit(split.images.to(device), labels.to(device))

    train_split = on_device(train)
    if description.mean is None or description.std is None:
        description = description.with_stats(*channel_stats(train_split.images.statistics_images()))
    _check_stats(description, read.input_shape[0])
    mean, std = description.stats(device)
    layout = source.layout(description) + fraction_note(cfg, len(train.labels), whole) + decode_note(cfg, train)
    return DataBundle(
        train=train_split,
        val=on_device(val),
        test=on_device(test),
        description=description,
        mean=mean,
        std=std,
        layout=layout,
        skipped=splits.skipped,
    )


def decode_note(cfg: DatasetConfig, train: SourceSplit) -> str:
    """For the data line: where a streamed split's JPEGs are decoded (dataset.decode_device)."""
    streamed = getattr(train.images, "decode_device", None) is not None or getattr(train.images, "keyed", False)
    if not streamed:
        return ""
    if str(cfg.decode_device) == "cuda":
        return "; JPEGs decoded on the GPU (dataset.decode_device=cuda)"
    return "; JPEGs decoded in the DataLoader workers (dataset.decode_device=cpu)"


def keep_fraction(cfg: DatasetConfig, train: SourceSplit, seed: int) -> SourceSplit:
    """dataset.fraction of the training split (after validation and test are taken, so they stay whole): a
    seeded, stratified subset (cnntrain.data.split.fraction_indices), by index or, for a stream, by key."""
    fraction = float(cfg.fraction)
    if fraction >= 1.0:
        return train
    return train.take(fraction_indices(train.labels, fraction, seed))


def fraction_note(cfg: DatasetConfig, kept: int, whole: int) -> str:
    """What the run's `data:` line adds when dataset.fraction trims the training split."""
    fraction = float(cfg.fraction)
    if fraction >= 1.0:
        return ""
    return (
        f"; dataset.fraction={fraction:g}: training on {kept:,} of {whole:,} training images (stratified, "
        f"seeded by the run's seed; validation and test whole)"
    )


def assemble(
    cfg: DatasetConfig, splits: SourceSplits, seed: int, fraction: bool = True
) -> tuple[SourceSplit, SourceSplit, SourceSplit]:
    """(train, val, test) from what the source gives: a test split it lacks is held out of train (stratified,
    fixed whatever the seed), a validation split it lacks is dataset.val_split of train, or with dataset.folds
    one fold of train (a validation split it has then joins train first: cross-validation uses all of it).
    Works on labels alone (images None) too, which is how the preflight sees the training split. Streamed
    splits cannot be indexed (their images are `keyed`): they are split by key hash instead (split_streams).
    Last, `fraction` keeps dataset.fraction of the training split (keep_fraction)."""
    train, val, test = _assemble_whole(cfg, splits, seed)
    return (keep_fraction(cfg, train, seed) if fraction else train), val, test


def _assemble_whole(
    cfg: DatasetConfig, splits: SourceSplits, seed: int
) -> tuple[SourceSplit, SourceSplit, SourceSplit]:
    train, val, test = splits.train, splits.val, splits.test
    if train.images is not None and train.images.keyed:
        return split_streams(cfg, train, val, test, seed)
    if test is None:
        keep, held = _held_out_test(cfg, train.labels)
        train, test = train.take(keep), train.take(held)
    if val is not None and cfg.folds is not None:
        train, val = train.concat(val), None
    if val is None:
        train_idx, val_idx = split_train(cfg, train.labels, seed)
        train, val = train.take(train_idx), train.take(val_idx)
    return train, val, test


def split_train(cfg: DatasetConfig, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of the training files: fold dataset.fold of dataset.folds when cross-validating,
    else dataset.val_split (seeded by the run's seed either way)."""
    if cfg.folds is not None:
        return fold_indices(labels, int(cfg.folds), int(cfg.fold), seed)
    return split_indices(labels, cfg.val_split, str(cfg.val_strategy), seed)


def train_labels(cfg: DatasetConfig, seed: int, description: DataDescription | None = None) -> torch.Tensor:
    """The labels of the split a run trains on, without decoding or keeping any image: what the preflight
    needs to check class balance before anything is written. Same files, order and splits as load_data."""
    description = description or describe_data(cfg)
    source = source_for(cfg)
    return assemble(cfg, source.leave_out(source.labels(description)), seed)[0].labels


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] units, in chunks to bound the memory."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for lo in range(0, images.shape[0], chunk):
        batch = images[lo : lo + chunk].double().div_(255.0).transpose(0, 1).reshape(channels, -1).cpu()
        total += batch.sum(dim=1)
        squares += batch.square().sum(dim=1)
    count = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return mean.tolist(), [max(s, 1e-3) for s in std.tolist()]


def _held_out_test(cfg: DatasetConfig, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A source without a test split: (kept, held-out test) indices, stratified, fixed whatever the seed."""
    return split_indices(labels, cfg.test_split, "stratified", TEST_SPLIT_SEED, key="dataset.test_split")


def _check_description(cfg: DatasetConfig, facts: DataDescription, source: Source) -> None:
    """A config that states the shape or the classes must agree with the data (the model is built from them)."""
    where = source.location()
    if cfg.input_shape is not None:
        expected = tuple(int(d) for d in cfg.input_shape)
        if facts.input_shape != expected:
            raise DataError(
                f"dataset.input_shape is {list(expected)} but the files under {where} hold "
                f"{'x'.join(map(str, facts.input_shape))} images; set dataset.input_shape={list(facts.input_shape)} "
                f"(or null to take it from the data)."
            )
    num_classes = cfg.num_classes
    if num_classes is not None and cfg.classes is not None and len(cfg.classes) != int(num_classes):
        raise DataError(f"dataset.classes has {len(cfg.classes)} names but dataset.num_classes is {num_classes}.")
    if num_classes is not None and cfg.classes is None and int(num_classes) != len(facts.classes):
        raise DataError(
            f"dataset.num_classes is {num_classes} but {where} has {len(facts.classes)} classes; "
            f"set dataset.num_classes=null to take it from the data."
        )


def _check_labels(cfg: DatasetConfig, labels: torch.Tensor, found_classes: int, source: Source) -> None:
    num_classes = int(cfg.num_classes or found_classes)
    if labels.ndim == 2:  # multi-hot rows: one 0/1 per label, as the source built them
        if labels.shape[1] != num_classes:
            raise DataError(
                f"labels under {source.location()} have {labels.shape[1]} labels per image, but "
                f"dataset.num_classes={num_classes}"
            )
        return
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"labels under {source.location()} range {int(labels.min())}..{int(labels.max())}, "
            f"outside 0..{num_classes - 1} allowed by dataset.num_classes={num_classes}."
        )


def _check_stats(description: DataDescription, channels: int) -> None:
    """A configured mean and std: one value per channel of the images, the std positive."""
    for key, values in (("mean", description.mean), ("std", description.std)):
        if len(values or []) != channels:
            raise DataError(f"dataset.{key} has {len(values or [])} values but the images have {channels} channel(s).")
    if any(v <= 0 for v in description.std or []):
        raise DataError(f"dataset.std must be positive; got {description.std}.")


def check_task(cfg: DatasetConfig, found: DataDescription, source: Source) -> None:
    """A stated dataset.task must be what the data holds: a source of one class per image cannot be read as
    label sets (multi-label data comes from a label file, a Sequence(ClassLabel) column or WebDataset shards)."""
    stated = cfg.task
    if stated is not None and stated != found.task:
        raise DataError(
            f"dataset.task={stated} but {source.location()} gives "
            f"{'a set of labels' if found.task == TASK_MULTILABEL else 'one class'} per image "
            f"({source.kind} data); set dataset.task={found.task} or null"
        )
