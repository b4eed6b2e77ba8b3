"""A dataset's splits as tensors on the training device, with the description the model is built from.

The whole dataset lives in two uint8 tensors per split on the target device: MNIST-sized data is
~50 MB, so a DataLoader with per-sample PIL decoding would only add overhead. Batches are index
slices of those tensors (cnntrain.data.batches); each batch is normalised on the fly.

`describe_data` answers what the model needs (shape, classes) as cheaply as the dataset allows, after
making sure the files are there; `load_data` reads the splits and completes the description with the
training split's statistics. Either way the data, not the config, decides the input shape and the
classes; a config that states them is checked against the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cnntrain.data.description import DataDescription, normalize
from cnntrain.data.image_folder import load_folder, scan_folder
from cnntrain.data.sources import data_location, dataset_kind, ensure_available, read_labels, read_split
from cnntrain.data.split import fold_indices, split_indices
from cnntrain.errors import DataError

TEST_SPLIT_SEED = 0  # a test set split off an image folder must not move when `seed` changes


@dataclass
class TensorSplit:
    """One split held as whole tensors: images uint8 [N, C, H, W], labels int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DataBundle:
    """Everything the engine needs from the data: three splits, the description, and its statistics on the device."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    description: DataDescription
    mean: torch.Tensor  # float32 [1, C, 1, 1] on the data's device
    std: torch.Tensor

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
        return DataBundle(self.train, self.val, self.test, description, mean_t, std_t)


def describe_data(cfg: Any) -> DataDescription:
    """Make sure the files are there (downloading if allowed), then return the input shape and classes
    as cheaply as the dataset allows: from the config when it states them (checked when the data is read),
    from the folder names and first image of an image folder (scanned once, kept for loading)."""
    if dataset_kind(cfg) == "imagefolder":
        scan = scan_folder(cfg)  # the one scan of the run: it also checks the folder's layout
        found = DataDescription(scan.input_shape, scan.classes, scan=scan)
    else:
        ensure_available(cfg)
        if cfg.get("input_shape") is not None and cfg.get("classes") is not None:
            found = DataDescription(tuple(int(d) for d in cfg.input_shape), [str(c) for c in cfg.classes])
        else:
            images, _, classes = read_split(cfg, train=False)
            found = DataDescription(tuple(int(d) for d in images.shape[1:]), classes)
    _check_description(cfg, found)
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        found = found.with_stats(list(cfg.mean), list(cfg.std))  # checked against the images when they are read
    return found


def load_data(cfg: Any, seed: int, device: torch.device | str = "cpu",
              description: DataDescription | None = None) -> DataBundle:
    """Read train and test once, split val off train (seeded) and put every tensor on `device`.

    `description` is what describe_data returned (the preflight passes it on, so the files are checked
    and an image folder is scanned once per run); its statistics, when it has them, are used as they are.
    """
    description = description or describe_data(cfg)
    if dataset_kind(cfg) == "imagefolder":
        (train_images, train_labels), (test_images, test_labels) = _read_folder(cfg, description)
        classes = description.classes
    else:
        train_images, train_labels, classes = read_split(cfg, train=True)
        test_images, test_labels, _ = read_split(cfg, train=False)
    read = DataDescription(tuple(int(d) for d in train_images.shape[1:]), classes)
    _check_description(cfg, read)
    for labels in (train_labels, test_labels):
        _check_labels(cfg, labels, len(classes))
    train_idx, val_idx = split_train(cfg, train_labels, seed)

    device = torch.device(device)

    def on_device(images: torch.Tensor, labels: torch.Tensor) -> TensorSplit:
        return TensorSplit(images.to(device), labels.to(device))

    train = on_device(train_images[train_idx], train_labels[train_idx])
    if description.mean is None or description.std is None:
        description = description.with_stats(*channel_stats(train.images))
    _check_stats(description, read.input_shape[0])
    mean, std = description.stats(device)
    return DataBundle(
        train=train,
        val=on_device(train_images[val_idx], train_labels[val_idx]),
        test=on_device(test_images, test_labels),
        description=description,
        mean=mean,
        std=std,
    )


def split_train(cfg: Any, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of the training files: fold dataset.fold of dataset.folds when cross-validating,
    else dataset.val_split (seeded by the run's seed either way)."""
    if cfg.get("folds") is not None:
        return fold_indices(labels, int(cfg.folds), int(cfg.fold), seed)
    return split_indices(labels, cfg.val_split, str(cfg.val_strategy), seed)


def train_labels(cfg: Any, seed: int, description: DataDescription | None = None) -> torch.Tensor:
    """The labels of the split a run trains on, without decoding or keeping any image: what the preflight
    needs to check class balance before anything is written. Same files, order and splits as load_data."""
    if dataset_kind(cfg) == "imagefolder":
        scan = description.scan if description is not None and description.scan is not None else scan_folder(cfg)
        labels = torch.tensor([label for _, label in scan.train_files], dtype=torch.int64)
        if scan.test_files is None:
            labels = labels[_held_out_test(cfg, labels)[0]]
    else:
        labels = read_labels(cfg, train=True)
    return labels[split_train(cfg, labels, seed)[0]]


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] units, in chunks to bound the memory."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for lo in range(0, images.shape[0], chunk):
        batch = images[lo:lo + chunk].double().div_(255.0).transpose(0, 1).reshape(channels, -1).cpu()
        total += batch.sum(dim=1)
        squares += batch.square().sum(dim=1)
    count = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return mean.tolist(), [max(s, 1e-3) for s in std.tolist()]


def _read_folder(cfg: Any, description: DataDescription) -> tuple[tuple[Any, torch.Tensor], tuple[Any, torch.Tensor]]:
    """An image folder's train and test tensors; without root/test, a stratified test_split of train."""
    scan = description.scan if description.scan is not None else scan_folder(cfg)
    train, test = load_folder(scan, bool(cfg.get("in_memory", True)), int(cfg.get("num_workers") or 0))
    if test is None:
        images, labels = train
        keep, held = _held_out_test(cfg, labels)
        train, test = (images[keep], labels[keep]), (images[held], labels[held])
    return train, test


def _held_out_test(cfg: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An image folder without root/test: (kept, held-out test) indices, stratified, fixed whatever the seed."""
    return split_indices(labels, cfg.get("test_split", 0.2), "stratified", TEST_SPLIT_SEED, key="dataset.test_split")


def _check_description(cfg: Any, facts: DataDescription) -> None:
    """A config that states the shape or the classes must agree with the data (the model is built from them)."""
    where = data_location(cfg)
    if cfg.get("input_shape") is not None:
        expected = tuple(int(d) for d in cfg.input_shape)
        if facts.input_shape != expected:
            raise DataError(
                f"dataset.input_shape is {list(expected)} but the files under {where} hold "
                f"{'x'.join(map(str, facts.input_shape))} images; set dataset.input_shape={list(facts.input_shape)} "
                f"(or null to take it from the data)."
            )
    num_classes = cfg.get("num_classes")
    if num_classes is not None and cfg.get("classes") is not None and len(cfg.classes) != int(num_classes):
        raise DataError(f"dataset.classes has {len(cfg.classes)} names but dataset.num_classes is {num_classes}.")
    if num_classes is not None and dataset_kind(cfg) == "imagefolder" and int(num_classes) != len(facts.classes):
        raise DataError(f"dataset.num_classes is {num_classes} but {where} has {len(facts.classes)} class folders; "
                        f"set dataset.num_classes=null to take it from the data.")


def _check_labels(cfg: Any, labels: torch.Tensor, found_classes: int) -> None:
    num_classes = int(cfg.get("num_classes") or found_classes)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"labels under {data_location(cfg)} range {int(labels.min())}..{int(labels.max())}, "
            f"outside 0..{num_classes - 1} allowed by dataset.num_classes={num_classes}."
        )


def _check_stats(description: DataDescription, channels: int) -> None:
    """A configured mean and std: one value per channel of the images, the std positive."""
    for key, values in (("mean", description.mean), ("std", description.std)):
        if len(values or []) != channels:
            raise DataError(f"dataset.{key} has {len(values or [])} values but the images have {channels} channel(s).")
    if any(v <= 0 for v in description.std or []):
        raise DataError(f"dataset.std must be positive; got {description.std}.")
