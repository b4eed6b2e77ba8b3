"""The torchvision source: dataset classes by name, their files on disk and downloads.

The MNIST family is read from the four IDX files under <root>/<Class>/raw (the published .gz files are
unpacked in place); other torchvision classes check their own files. A download is one attempt with a
socket timeout; any failure ends in one DataError that names the folder and the fix.
"""

from __future__ import annotations

import math
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import SourceSplit
from cnntrain.data.description import DataDescription
from cnntrain.data.sources.base import Source, SourceSplits
from cnntrain.data.sources.idx_gzip import MAX_IDX_BYTES, gunzip_idx
from cnntrain.errors import ConfigError, DataError, first_line
from cnntrain.files import open_regular

# The four files torchvision's MNIST-style datasets read from <root>/<class>/raw.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# torchvision classes that share that layout and take (root, train, download) only.
IDX_CLASSES = ("FashionMNIST", "KMNIST", "MNIST")
# Other classification datasets with (root, train, download[, split]) and .data/.targets/.classes.
SUPPORTED_CLASSES = ("CIFAR10", "CIFAR100", "EMNIST", "FashionMNIST", "KMNIST", "MNIST")
EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
# torchvision's urlopen has no timeout; a firewall that drops packets would block forever.
# This bounds each socket operation (connect, read) of a download attempt, not the whole download.
DOWNLOAD_TIMEOUT_S = 10.0
WHERE_ROOT = "set data_root (or CNNTRAIN_DATA_ROOT; dataset.root for this dataset alone)"
"""How a user names the data's folder: the names README and --help use, then the dataset's own key."""


def raw_folder(cfg: DatasetConfig) -> Path:
    """Where torchvision looks for the IDX files: <root>/<torchvision_class>/raw."""
    return Path(str(cfg.root)) / str(cfg.torchvision_class) / "raw"


class TorchvisionSource(Source):
    """A torchvision dataset class with its own train and test files; validation is split off train."""

    kind = "torchvision"

    def describe(self) -> DataDescription:
        """From the config when it states shape and classes (checked when the data is read), else from the
        test split's images."""
        cfg = self.cfg
        ensure_available(cfg)
        if cfg.input_shape is not None and cfg.classes is not None:
            return DataDescription(tuple(int(d) for d in cfg.input_shape), [str(c) for c in cfg.classes])
        images, _, classes = read_split(cfg, train=False)
        return DataDescription(tuple(int(d) for d in images.shape[1:]), classes)

    def labels(self, description: DataDescription) -> SourceSplits:
        return SourceSplits(
            train=SourceSplit(None, read_labels(self.cfg, train=True)),
            test=SourceSplit(None, read_labels(self.cfg, train=False)),
        )

    def read(self, description: DataDescription) -> SourceSplits:
        train_images, train_labels, _ = read_split(self.cfg, train=True)
        test_images, test_labels, _ = read_split(self.cfg, train=False)
        return SourceSplits(train=SourceSplit(train_images, train_labels), test=SourceSplit(test_images, test_labels))

    def location(self) -> str:
        return str(raw_folder(self.cfg) if str(self.cfg.torchvision_class) in IDX_CLASSES else Path(str(self.cfg.root)))

    def layout(self, description: DataDescription) -> str:
        return (
            f"torchvision {self.cfg.torchvision_class} under {self.location()}: its train and test files; "
            f"validation taken from train"
        )


def ensure_available(cfg: DatasetConfig) -> None:
    """Make sure the dataset's files exist, downloading if allowed; else raise one readable DataError."""
    if _class_name(cfg) not in IDX_CLASSES:
        _ensure_torchvision_files(cfg)
        return
    folder = raw_folder(cfg)
    broken = _gunzip_missing(folder)
    if not _missing_files(folder):
        return
    if cfg.download:
        _try_download(cfg)
        if not _missing_files(folder):
            return
    if broken:
        archive, reason = next(iter(broken.items()))
        raise DataError(
            f"{archive} cannot be unpacked ({reason}); replace it with an intact copy, or delete it"
            f"{' and set dataset.download=true' if not cfg.download else ' to download it again'}."
        )
    raise DataError(_not_found_message(cfg, folder, _missing_files(folder)))


def _missing_files(folder: Path) -> list[str]:
    return [name for name in IDX_FILES if not (folder / name).is_file()]


def _gunzip_missing(folder: Path) -> dict[Path, str]:
    """Accept the .gz files as published: users who fetch them by hand should not have to unpack them.
    Returns the archives that could not be unpacked, with the reason."""
    broken = {}
    for name in _missing_files(folder):
        archive = folder / f"{name}.gz"
        if archive.is_file():
            reason = gunzip_idx(archive, folder / name, dims=int(name.split("idx")[1][0]))
            if reason is not None:
                broken[archive] = reason
    return broken


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _try_download(cfg: DatasetConfig) -> None:
    """One download attempt through torchvision; any failure is reported later as 'files missing'."""
    dataset_class = _dataset_class(cfg)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            dataset_class(str(cfg.root), train=True, download=True, **_extra_args(cfg))
    except Exception:
        pass


def _ensure_torchvision_files(cfg: DatasetConfig) -> None:
    """Datasets outside the IDX family: torchvision itself checks its files (and their checksums)."""
    _extra_args(cfg)  # a missing EMNIST split is a config mistake, not missing files
    if _opens(cfg):
        return
    if cfg.download:
        _try_download(cfg)
        if _opens(cfg):
            return
    why = "download failed (no network?)" if cfg.download else "dataset.download=false"
    raise DataError(
        f"{cfg.torchvision_class} not found under {cfg.root} and {why}. Put torchvision's files for "
        f"{cfg.torchvision_class} there, or {WHERE_ROOT} to a folder that has them."
    )


def _opens(cfg: DatasetConfig) -> bool:
    try:
        _dataset_class(cfg)(str(cfg.root), train=False, download=False, **_extra_args(cfg))
    except Exception:
        return False
    return True


def _extra_args(cfg: DatasetConfig) -> dict[str, Any]:
    """Constructor arguments beyond (root, train, download): EMNIST's split."""
    if str(cfg.torchvision_class) != "EMNIST":
        return {}
    split = cfg.split
    if split not in EMNIST_SPLITS:
        raise ConfigError(f"dataset.split={split}: EMNIST needs one of {', '.join(EMNIST_SPLITS)}")
    return {"split": str(split)}


def _not_found_message(cfg: DatasetConfig, folder: Path, missing: list[str]) -> str:
    partly = "" if len(missing) == len(IDX_FILES) else f" (missing {', '.join(missing)})"
    why = "download failed (no network?)" if cfg.download else "dataset.download=false"
    name, root = str(cfg.torchvision_class), Path(str(cfg.root))
    parent = _dataset_parent(root, name)
    if parent is not None:
        return (
            f"{name} not found: the data root {root} is {name}'s own folder, and cnntrain reads "
            f"<data root>/{name}/raw/; point at the parent folder {parent}: data_root={parent} "
            f"(or CNNTRAIN_DATA_ROOT={parent}; dataset.root for this dataset alone)"
        )
    return (
        f"{name} not found under {folder}{partly} and {why}. "
        f"Put the four IDX files there, or {WHERE_ROOT} to a folder that holds {name}/raw/."
    )


def _dataset_parent(root: Path, name: str) -> Path | None:
    """The folder above <Name>/raw when the root given is <Name>/raw or <Name> itself (a doubled path), else None."""
    parts = [part.lower() for part in root.parts]
    for tail in ([name.lower(), "raw"], [name.lower()]):
        if len(parts) > len(tail) and parts[-len(tail) :] == tail:
            return root.parents[len(tail) - 1]
    return None


def _class_name(cfg: DatasetConfig) -> str:
    name = str(cfg.torchvision_class)
    if name not in SUPPORTED_CLASSES:
        raise ConfigError(
            f"dataset.torchvision_class '{name}' is not supported; available: {', '.join(SUPPORTED_CLASSES)}."
        )
    return name


def _dataset_class(cfg: DatasetConfig) -> type:
    import torchvision.datasets  # here, not at the top: it costs a second and only loading needs it

    return getattr(torchvision.datasets, _class_name(cfg))


def read_split(cfg: DatasetConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One split as uint8 NCHW images and int64 labels, with the class names.

    The MNIST family's IDX files are read directly (read_idx); other datasets are parsed by torchvision,
    whose arrays are taken whole. torchvision is imported only where it is needed: importing it costs
    more than a second, as much as reading all of MNIST.
    """
    if _class_name(cfg) in IDX_CLASSES:
        prefix = "train" if train else "t10k"
        images = as_nchw(read_idx(raw_folder(cfg) / f"{prefix}-images-idx3-ubyte", dims=3))
        labels = read_idx(raw_folder(cfg) / f"{prefix}-labels-idx1-ubyte", dims=1)
        names = cfg.classes or _dataset_class(cfg).classes
    else:
        images, labels, names = _read_torchvision(cfg, train)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{cfg.torchvision_class} files under {raw_folder(cfg)} disagree: {images.shape[0]} "
            f"{'train' if train else 't10k'} images but {labels.shape[0]} labels; replace them with intact copies."
        )
    names = names or [str(i) for i in range(int(labels.max()) + 1 if labels.numel() else 0)]
    return images, labels.long(), [str(c) for c in names]


def read_labels(cfg: DatasetConfig, train: bool) -> torch.Tensor:
    """One split's int64 labels alone: the IDX label file where there is one (no images are read), else
    read_split's."""
    if _class_name(cfg) in IDX_CLASSES:
        prefix = "train" if train else "t10k"
        return read_idx(raw_folder(cfg) / f"{prefix}-labels-idx1-ubyte", dims=1).long()
    return read_split(cfg, train)[1]


def read_idx(path: Path, dims: int) -> torch.Tensor:
    """An IDX file of unsigned bytes with `dims` dimensions (0x00 0x00 0x08 <dims>, then big-endian uint32
    sizes, then the data) as a uint8 tensor; a DataError naming the file when it is anything else."""
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_IDX_BYTES:
                raise DataError(
                    _corrupt_message(path, f"it holds {size:,} bytes, more than the {MAX_IDX_BYTES:,} an IDX file may")
                )
            data = handle.read()
    except OSError as err:
        raise DataError(f"cannot read {path}: {first_line(err)}") from None
    header = 4 + 4 * dims
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, dims)):
        found = data[:4].hex() if len(data) >= 4 else f"{len(data)} bytes"
        raise DataError(_corrupt_message(path, f"it starts with {found}, not the IDX header 000008{dims:02x}"))
    sizes = struct.unpack(f">{dims}I", data[4:header])
    expected = math.prod(sizes)
    if len(data) - header != expected:
        raise DataError(
            _corrupt_message(
                path,
                f"it holds {len(data) - header} data bytes, its header announces "
                f"{'x'.join(map(str, sizes))} = {expected}",
            )
        )
    if expected == 0:  # a valid file of zero items; torch.frombuffer refuses an empty buffer
        return torch.empty(sizes, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(*sizes)


def _corrupt_message(path: Path, reason: str) -> str:
    return (
        f"file {path} is corrupt or truncated ({reason}); replace it with an intact copy, or delete it "
        f"and set dataset.download=true."
    )


def _read_torchvision(cfg: DatasetConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    dataset_class = _dataset_class(cfg)
    try:
        dataset = dataset_class(str(cfg.root), train=train, download=False, **_extra_args(cfg))
        images, labels = as_nchw(dataset.data), torch.as_tensor(dataset.targets)
    except ConfigError:
        raise
    except Exception as exc:
        raise DataError(
            f"{cfg.torchvision_class} files under {cfg.root} cannot be read ({first_line(exc)}); "
            f"replace them with intact copies, or delete them and set dataset.download=true."
        ) from exc
    return images, labels, cfg.classes or getattr(dataset, "classes", None)


def as_nchw(data: Any) -> torch.Tensor:
    """torchvision's image arrays as uint8 [N, C, H, W]: MNIST gives [N, H, W] tensors, CIFAR [N, H, W, C] numpy."""
    images = torch.as_tensor(data)
    if images.dim() == 3:
        return images.unsqueeze(1)
    if images.dim() == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return images.permute(0, 3, 1, 2).contiguous()
    return images
