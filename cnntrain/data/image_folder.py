"""An image-folder dataset: root/train/<class>/*.png|jpg, optionally root/test/<class>/...

Class names are the sub-folder names (sorted); the input shape is the configured (or first image's)
size and colour. Images are decoded once into uint8 tensors and cached next to the data in
root/.cnntrain-cache/, keyed by every file's name, size and mtime and by the target shape, so a second
run loads one file instead of decoding again, and any change to the folder decodes afresh.
With dataset.in_memory=false nothing is decoded up front: LazyImages stands in for the image tensor
and batches are decoded by DataLoader workers (for folders too large for memory).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnntrain.files import atomic_write
from cnntrain.errors import DataError
from cnntrain.data.images import IMAGE_SUFFIXES, decode_image

CACHE_DIR = ".cnntrain-cache"
CACHE_VERSION = 1
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class FolderScan:
    """What the file names and the first image tell without decoding everything."""

    root: Path
    classes: list[str]
    input_shape: tuple[int, int, int]
    train_files: list[tuple[Path, int]]
    test_files: list[tuple[Path, int]] | None  # None: no root/test, split one off train


def scan_folder(cfg: Any) -> FolderScan:
    """Find the classes and files under dataset.root; raise DataError saying what the layout should be."""
    root = Path(str(cfg.root))
    train_dir = root / "train"
    layout = f"expected {root}/train/<class>/*.png|jpg (and optionally {root}/test/<class>/...)"
    if not train_dir.is_dir():
        raise DataError(f"image folder {train_dir} not found; {layout}; set dataset.root to such a folder")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{train_dir} has {len(classes)} class folder(s); an image folder needs at least 2 ({layout})")
    train_files = _files(train_dir, classes)
    empty = [name for i, name in enumerate(classes) if not any(label == i for _, label in train_files)]
    if empty:
        raise DataError(f"class folder(s) {', '.join(empty)} under {train_dir} hold no .png/.jpg/.jpeg images")
    test_files = None
    test_dir = root / "test"
    if test_dir.is_dir():
        unknown = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in classes
                         and not d.name.startswith("."))
        if unknown:
            raise DataError(f"{test_dir} has class folder(s) {', '.join(unknown)} that {train_dir} lacks; "
                            f"train classes: {', '.join(classes)}")
        test_files = _files(test_dir, classes)
        if not test_files:
            raise DataError(f"{test_dir} holds no images; fill it or remove it to split a test set off train")
    return FolderScan(root, classes, _input_shape(cfg, train_files[0][0]), train_files, test_files)


def _files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    found = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if class_dir.is_dir():
            found.extend((p, label) for p in sorted(class_dir.iterdir())
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return found


def _input_shape(cfg: Any, first_image: Path) -> tuple[int, int, int]:
    """dataset.channels / dataset.image_size when set, else the first image's colour and size."""
    channels, size = cfg.get("channels"), cfg.get("image_size")
    if channels is None or size is None:
        from PIL import Image

        try:
            with Image.open(first_image) as image:
                mode, (width, height) = image.mode, image.size
        except (OSError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot read image {first_image}: {err}") from None
        channels = channels if channels is not None else (1 if mode in GRAYSCALE_MODES else 3)
        size = size if size is not None else [height, width]
    return int(channels), int(size[0]), int(size[1])


class LazyImages:
    """Image files standing in for a uint8 [N, C, H, W] tensor, decoded only when read.

    Indexing with an index tensor selects files (no decoding), as the train/val/test split does;
    an int or a slice decodes those images. `to(device)` is a no-op: batches move when they are read.
    """

    def __init__(self, files: list[Path], input_shape: tuple[int, int, int], num_workers: int = 0) -> None:
        self.files = files
        self.input_shape = input_shape
        self.num_workers = num_workers

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.input_shape))

    def __len__(self) -> int:
        return len(self.files)

    def to(self, device: Any) -> "LazyImages":
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, torch.Tensor):
            return LazyImages([self.files[i] for i in key.tolist()], self.input_shape, self.num_workers)
        if isinstance(key, slice):
            return torch.stack([self.decode(i) for i in range(*key.indices(len(self)))])
        return self.decode(int(key))

    def decode(self, index: int) -> torch.Tensor:
        return decode_image(self.files[index], *self.input_shape)


class FileDataset(torch.utils.data.Dataset):
    """(image, label) pairs for a DataLoader over LazyImages; decoding happens in its worker processes."""

    def __init__(self, images: LazyImages, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.decode(index), self.labels[index]


def load_folder(scan: FolderScan, in_memory: bool = True, num_workers: int = 0
                ) -> tuple[tuple[Any, torch.Tensor], tuple[Any, torch.Tensor] | None]:
    """(train images, labels) and (test images, labels) or None: decoded (or read from the cache) when
    in_memory, else LazyImages that decode per batch."""
    def load(split: str, files: list[tuple[Path, int]]) -> tuple[Any, torch.Tensor]:
        if in_memory:
            return _cached_decode(scan, split, files)
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        return LazyImages([path for path, _ in files], scan.input_shape, num_workers), labels

    train = load("train", scan.train_files)
    test = load("test", scan.test_files) if scan.test_files is not None else None
    return train, test


def cache_path(scan: FolderScan, split: str, files: list[tuple[Path, int]]) -> Path:
    """The cache file for these exact files and this target shape."""
    listing = [[str(p.relative_to(scan.root)), p.stat().st_size, p.stat().st_mtime_ns, label] for p, label in files]
    text = json.dumps({"version": CACHE_VERSION, "shape": scan.input_shape, "files": listing})
    return scan.root / CACHE_DIR / f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def _cached_decode(scan: FolderScan, split: str, files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    path = cache_path(scan, split, files)
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            return cached["images"], cached["labels"]
        except Exception:  # noqa: BLE001 - a torn or foreign cache file is simply rebuilt
            pass
    channels, height, width = scan.input_shape
    images = torch.empty((len(files), channels, height, width), dtype=torch.uint8)
    for i, (file, _) in enumerate(files):
        images[i] = decode_image(file, channels, height, width)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    try:
        atomic_write(path, lambda tmp: torch.save({"images": images, "labels": labels}, tmp))
    except OSError:
        pass  # a read-only data folder still trains; it just decodes every time
    return images, labels
