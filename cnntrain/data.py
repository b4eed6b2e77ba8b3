"""Dataset loading, the train/val split and batching.

The whole dataset lives in two uint8 tensors per split on the target device: MNIST-sized data is
~50 MB, so a DataLoader with per-sample PIL decoding would only add overhead. Batches are index
slices of those tensors; the caller normalises each batch with DataBundle.normalize.

Two kinds of dataset: `torchvision` (a classification dataset class by name: the MNIST family read
from IDX files, EMNIST with its split, CIFAR-10/100) and `imagefolder` (cnntrain.image_folder).
Either way the data, not the config, decides the input shape and the classes; a config that states
them is checked against the data.
"""

from __future__ import annotations

import gzip
import math
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnntrain.errors import ConfigError, DataError
from cnntrain.image_folder import FileDataset, LazyImages, load_folder, scan_folder

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
DATASET_KINDS = ("torchvision", "imagefolder")
TEST_SPLIT_SEED = 0  # a test set split off an image folder must not move when `seed` changes
# torchvision's urlopen has no timeout; a firewall that drops packets would block forever.
# This bounds each socket operation (connect, read) of a download attempt, not the whole download.
DOWNLOAD_TIMEOUT_S = 10.0
VAL_STRATEGIES = ("random", "stratified")


# ---------------------------------------------------------------- containers


@dataclass
class TensorSplit:
    """One split held as whole tensors: images uint8 [N, C, H, W], labels int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DataBundle:
    """Everything the engine needs from the data: three splits plus what normalising and reporting need."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    mean: torch.Tensor  # float32 [1, C, 1, 1]
    std: torch.Tensor  # float32 [1, C, 1, 1]
    classes: list[str]
    input_shape: tuple[int, int, int]

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8, self.mean, self.std)


def normalize(images_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x/255 - mean)/std as float32; in place on the fresh float copy to save two allocations."""
    return images_uint8.float().div_(255.0).sub_(mean).div_(std)


# ---------------------------------------------------------------- files on disk


def raw_folder(cfg: Any) -> Path:
    """Where torchvision looks for the IDX files: <root>/<torchvision_class>/raw."""
    return Path(str(cfg.root)) / str(cfg.torchvision_class) / "raw"


def dataset_kind(cfg: Any) -> str:
    kind = str(cfg.get("kind") or "torchvision")
    if kind not in DATASET_KINDS:
        raise ConfigError(f"dataset.kind={kind}: expected one of {', '.join(DATASET_KINDS)}")
    return kind


def ensure_available(cfg: Any) -> None:
    """Make sure the dataset's files exist, downloading if allowed; else raise one readable DataError."""
    if dataset_kind(cfg) == "imagefolder":
        scan_folder(cfg)
        return
    if _class_name(cfg) not in IDX_CLASSES:
        _ensure_torchvision_files(cfg)
        return
    folder = raw_folder(cfg)
    _gunzip_missing(folder)
    if not _missing_files(folder):
        return
    if cfg.download:
        _try_download(cfg)
        if not _missing_files(folder):
            return
    raise DataError(_not_found_message(cfg, folder, _missing_files(folder)))


def _missing_files(folder: Path) -> list[str]:
    return [name for name in IDX_FILES if not (folder / name).is_file()]


def _gunzip_missing(folder: Path) -> None:
    """Accept the .gz files as published: users who fetch them by hand should not have to unpack them."""
    for name in _missing_files(folder):
        archive = folder / f"{name}.gz"
        if archive.is_file():
            _gunzip(archive, folder / name)


def _gunzip(archive: Path, target: Path) -> None:
    # Via a .part file, so a broken archive never leaves a half-written IDX file that looks present.
    part = target.with_name(target.name + ".part")
    try:
        with gzip.open(archive, "rb") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        part.replace(target)
    except (OSError, EOFError):
        part.unlink(missing_ok=True)


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _try_download(cfg: Any) -> None:
    """One download attempt through torchvision; any failure is reported later as 'files missing'."""
    dataset_class = _dataset_class(cfg)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            dataset_class(str(cfg.root), train=True, download=True, **_extra_args(cfg))
    except Exception:  # noqa: BLE001 - DNS, timeouts, HTTP errors, bad checksums: all mean "not downloaded"
        pass


def _ensure_torchvision_files(cfg: Any) -> None:
    """Datasets outside the IDX family: torchvision itself checks its files (and their checksums)."""
    _extra_args(cfg)  # a missing EMNIST split is a config mistake, not missing files
    if _opens(cfg):
        return
    if cfg.download:
        _try_download(cfg)
        if _opens(cfg):
            return
    why = "download failed (no network?)" if cfg.download else "dataset.download=false"
    raise DataError(f"{cfg.torchvision_class} not found under {cfg.root} and {why}. Put torchvision's files for "
                    f"{cfg.torchvision_class} there, or set dataset.root to a folder that has them.")


def _opens(cfg: Any) -> bool:
    try:
        _dataset_class(cfg)(str(cfg.root), train=False, download=False, **_extra_args(cfg))
    except Exception:  # noqa: BLE001 - torchvision raises RuntimeError for missing or damaged files
        return False
    return True


def _extra_args(cfg: Any) -> dict[str, Any]:
    """Constructor arguments beyond (root, train, download): EMNIST's split."""
    if str(cfg.torchvision_class) != "EMNIST":
        return {}
    split = cfg.get("split")
    if split not in EMNIST_SPLITS:
        raise ConfigError(f"dataset.split={split}: EMNIST needs one of {', '.join(EMNIST_SPLITS)}")
    return {"split": str(split)}


def _not_found_message(cfg: Any, folder: Path, missing: list[str]) -> str:
    partly = "" if len(missing) == len(IDX_FILES) else f" (missing {', '.join(missing)})"
    why = "download failed (no network?)" if cfg.download else "dataset.download=false"
    return (
        f"{cfg.torchvision_class} not found under {folder}{partly} and {why}. "
        f"Put the four IDX files there, or set dataset.root to a folder that has them."
    )


def _class_name(cfg: Any) -> str:
    name = str(cfg.torchvision_class)
    if name not in SUPPORTED_CLASSES:
        raise ConfigError(
            f"dataset.torchvision_class '{name}' is not supported; available: {', '.join(SUPPORTED_CLASSES)}."
        )
    return name


def _dataset_class(cfg: Any) -> type:
    import torchvision.datasets  # here, not at the top: it costs a second and only loading needs it

    return getattr(torchvision.datasets, _class_name(cfg))


# ---------------------------------------------------------------- loading


@dataclass
class DataFacts:
    """What the data says about itself: the config may leave these out (null) and then gets them from here."""

    input_shape: tuple[int, int, int]
    classes: list[str]


def describe_data(cfg: Any) -> DataFacts:
    """Input shape and classes, as cheaply as the dataset allows (an image folder is scanned, not decoded)."""
    if dataset_kind(cfg) == "imagefolder":
        scan = scan_folder(cfg)
        facts = DataFacts(scan.input_shape, scan.classes)
    elif cfg.get("input_shape") is not None and cfg.get("classes") is not None:
        facts = DataFacts(tuple(int(d) for d in cfg.input_shape), [str(c) for c in cfg.classes])
    else:
        images, _, classes = _read_split(cfg, train=False)
        facts = DataFacts(tuple(int(d) for d in images.shape[1:]), classes)
    _check_facts(cfg, facts)
    return facts


def fill_dataset_config(cfg: Any, facts: DataFacts) -> None:
    """Write the data's shape and classes into a dataset config whose keys were left null."""
    cfg.input_shape = list(facts.input_shape)
    cfg.classes = list(facts.classes)
    cfg.num_classes = len(facts.classes)


def load_data(cfg: Any, seed: int, device: torch.device | str = "cpu") -> DataBundle:
    """Read train and test once, split val off train (seeded) and put every tensor on `device`."""
    ensure_available(cfg)
    if dataset_kind(cfg) == "imagefolder":
        (train_images, train_labels), (test_images, test_labels), classes = _read_folder(cfg)
    else:
        train_images, train_labels, classes = _read_split(cfg, train=True)
        test_images, test_labels, _ = _read_split(cfg, train=False)
    facts = DataFacts(tuple(int(d) for d in train_images.shape[1:]), classes)
    _check_facts(cfg, facts)
    for labels in (train_labels, test_labels):
        _check_labels(cfg, labels, len(classes))
    train_idx, val_idx = split_indices(train_labels, cfg.val_split, str(cfg.val_strategy), seed)

    device = torch.device(device)

    def on_device(images: torch.Tensor, labels: torch.Tensor) -> TensorSplit:
        return TensorSplit(images.to(device), labels.to(device))

    channels = train_images.shape[1]
    train = on_device(train_images[train_idx], train_labels[train_idx])
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        mean, std = channel_stats(train.images)
    return DataBundle(
        train=train,
        val=on_device(train_images[val_idx], train_labels[val_idx]),
        test=on_device(test_images, test_labels),
        mean=_channel_stat(mean, "mean", channels, device),
        std=_channel_stat(std, "std", channels, device),
        classes=classes,
        input_shape=facts.input_shape,
    )


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


def _read_folder(cfg: Any) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], list[str]]:
    """An image folder's train and test tensors; without root/test, a stratified test_split of train."""
    scan = scan_folder(cfg)
    train, test = load_folder(scan, bool(cfg.get("in_memory", True)), int(cfg.get("num_workers") or 0))
    if test is None:
        images, labels = train
        keep, held = split_indices(labels, cfg.get("test_split", 0.2), "stratified", TEST_SPLIT_SEED)
        train, test = (images[keep], labels[keep]), (images[held], labels[held])
    return train, test, scan.classes


def _read_split(cfg: Any, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Let torchvision parse the files, but take its arrays whole as uint8 NCHW tensors."""
    dataset_class = _dataset_class(cfg)
    try:
        dataset = dataset_class(str(cfg.root), train=train, download=False, **_extra_args(cfg))
        images, labels = as_nchw(dataset.data), torch.as_tensor(dataset.targets)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - torchvision reports bad files with asserts, view errors, ...
        raise DataError(_unreadable_message(cfg, train, exc)) from exc
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{cfg.torchvision_class} files under {raw_folder(cfg)} disagree: {images.shape[0]} "
            f"{'train' if train else 't10k'} images but {labels.shape[0]} labels; replace them with intact copies."
        )
    names = cfg.get("classes") or getattr(dataset, "classes", None) or \
        [str(i) for i in range(int(labels.max()) + 1 if labels.numel() else 0)]
    return images, labels.long(), [str(c) for c in names]


def as_nchw(data: Any) -> torch.Tensor:
    """torchvision's image arrays as uint8 [N, C, H, W]: MNIST gives [N, H, W] tensors, CIFAR [N, H, W, C] numpy."""
    images = torch.as_tensor(data)
    if images.dim() == 3:
        return images.unsqueeze(1)
    if images.dim() == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return images.permute(0, 3, 1, 2).contiguous()
    return images


def _unreadable_message(cfg: Any, train: bool, exc: Exception) -> str:
    folder = raw_folder(cfg)
    if str(cfg.torchvision_class) not in IDX_CLASSES:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"{cfg.torchvision_class} files under {cfg.root} cannot be read ({reason}); "
                f"replace them with intact copies, or delete them and set dataset.download=true.")
    bad = _first_unreadable_file(folder, "train" if train else "t10k")
    what, it = (f"file {folder / bad} is", "it") if bad else (f"files under {folder} are", "them")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"{cfg.torchvision_class} {what} corrupt or truncated ({reason}); "
        f"replace {it} with intact copies, or delete {it} and set dataset.download=true."
    )


def _first_unreadable_file(folder: Path, prefix: str) -> str | None:
    """Name the bad file: the dataset constructor's error does not say which of the two it was reading."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    readers = {f"{prefix}-images-idx3-ubyte": read_image_file, f"{prefix}-labels-idx1-ubyte": read_label_file}
    for name, reader in readers.items():
        try:
            reader(str(folder / name))
        except Exception:  # noqa: BLE001 - same reason as in _read_split
            return name
    return None


def data_location(cfg: Any) -> Path:
    """Where the files are, for messages."""
    if dataset_kind(cfg) == "imagefolder" or str(cfg.torchvision_class) not in IDX_CLASSES:
        return Path(str(cfg.root))
    return raw_folder(cfg)


def _check_facts(cfg: Any, facts: DataFacts) -> None:
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


def _channel_stat(values: Any, key: str, channels: int, device: torch.device) -> torch.Tensor:
    stat = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if stat.numel() != channels:
        raise DataError(f"dataset.{key} has {stat.numel()} values but the images have {channels} channel(s).")
    if key == "std" and bool((stat <= 0).any()):
        raise DataError(f"dataset.std must be positive; got {[float(v) for v in values]}.")
    return stat.view(1, channels, 1, 1).to(device)


# ---------------------------------------------------------------- train/val split


def split_indices(
    labels: torch.Tensor, val_split: float | int, strategy: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train_idx, val_idx): disjoint, together all of range(N), each sorted ascending."""
    if strategy not in VAL_STRATEGIES:
        raise DataError(f"dataset.val_strategy '{strategy}' is not allowed; use one of: {', '.join(VAL_STRATEGIES)}.")
    labels = labels.cpu()
    n = int(labels.shape[0])
    n_val = _val_count(val_split, n)
    generator = torch.Generator().manual_seed(int(seed))
    if strategy == "random":
        val_idx = torch.randperm(n, generator=generator)[:n_val]
    else:
        val_idx = _stratified_val(labels, n_val, generator)
    in_train = torch.ones(n, dtype=torch.bool)
    in_train[val_idx] = False
    return in_train.nonzero().squeeze(1), val_idx.sort().values


def _val_count(val_split: Any, n: int) -> int:
    """A fraction in (0, 1) or a whole count >= 1; both must leave images on each side."""
    allowed = f"a fraction in (0, 1) or a whole count from 1 to {n - 1} (train has {n} images)"
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise DataError(f"dataset.val_split={val_split!r} is not a number; use {allowed}.")
    if isinstance(val_split, int) and 1 <= val_split < n:
        return val_split
    if isinstance(val_split, int) or not 0.0 < val_split < 1.0:
        raise DataError(f"dataset.val_split={val_split} is out of range; use {allowed}.")
    count = math.floor(val_split * n + 0.5)
    if not 1 <= count < n:
        raise DataError(f"dataset.val_split={val_split} gives {count} validation images; use {allowed}.")
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


# ---------------------------------------------------------------- batching


def iterate_batches(
    split: TensorSplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) slices of the device tensors; order drawn from a CPU `generator`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if isinstance(split.images, LazyImages):
        yield from _streamed_batches(split, batch_size, shuffle, generator, drop_last)
        return
    order = torch.randperm(n, generator=generator).to(split.labels.device) if shuffle else None
    for b in range(num_batches(n, batch_size, drop_last)):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        if order is None:
            yield split.images[lo:hi], split.labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.images[idx], split.labels[idx]


def _streamed_batches(split: TensorSplit, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                      drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same batches, in the same order, as the in-memory path, but decoded by DataLoader workers."""
    from torch.utils.data import DataLoader

    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    count = num_batches(n, batch_size, drop_last)
    batches = [order[b * batch_size:(b + 1) * batch_size].tolist() for b in range(count)]
    device = split.labels.device
    loader = DataLoader(FileDataset(split.images, split.labels), batch_sampler=batches,
                        num_workers=split.images.num_workers, pin_memory=device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch, matching iterate_batches."""
    return n // batch_size if drop_last else -(-n // batch_size)
