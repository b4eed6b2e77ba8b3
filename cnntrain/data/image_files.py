"""Lists of image files as uint8 tensors: decoded once and cached, or decoded per batch by DataLoader workers.

Every source whose samples are image files (class folders, label files) turns its file lists into tensors
here. In memory, the files are decoded once and cached in a `.cnntrain-cache` folder next to the data, keyed
by every file's name, size and mtime and by the target shape, so a second run loads one file instead of
decoding again, and any change to the files decodes afresh. With dataset.in_memory=false nothing is decoded up
front: LazyImages stands in for the image tensor and batches are decoded by DataLoader workers (for data too
large for memory).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from cnntrain.data.images import decode_image
from cnntrain.files import atomic_write

CACHE_DIR = ".cnntrain-cache"
CACHE_VERSION = 1

ImageFiles = list[tuple[Path, int]]
"""(file, label) pairs of one split, in the split's order."""


def load_files(files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str,
               in_memory: bool = True, num_workers: int = 0) -> tuple[Any, torch.Tensor]:
    """(images, labels) of one split: decoded (or read from the cache under cache_root) when in_memory, else
    LazyImages that decode per batch."""
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    if not in_memory:
        return LazyImages([path for path, _ in files], input_shape, num_workers), labels
    return _cached_decode(files, input_shape, cache_root, split), labels


def cache_path(files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str) -> Path:
    """The cache file for these exact files and this target shape."""
    listing = [[_relative(p, cache_root), p.stat().st_size, p.stat().st_mtime_ns, label] for p, label in files]
    text = json.dumps({"version": CACHE_VERSION, "shape": list(input_shape), "files": listing})
    return cache_root / CACHE_DIR / f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path.resolve())


def _cached_decode(files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str) -> torch.Tensor:
    path = cache_path(files, input_shape, cache_root, split)
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            images = cached["images"]
            if tuple(images.shape) == (len(files), *input_shape) and images.dtype == torch.uint8:
                return images
        except Exception:  # noqa: BLE001 - a torn or foreign cache file is simply rebuilt
            pass
    channels, height, width = input_shape
    images = torch.empty((len(files), channels, height, width), dtype=torch.uint8)
    for i, (file, _) in enumerate(files):
        images[i] = decode_image(file, channels, height, width)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    try:
        atomic_write(path, lambda tmp: torch.save({"images": images, "labels": labels}, tmp))
    except OSError:
        pass  # a read-only data folder still trains; it just decodes every time
    return images


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

    def to(self, device: Any) -> LazyImages:
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, torch.Tensor):
            return LazyImages([self.files[i] for i in key.tolist()], self.input_shape, self.num_workers)
        if isinstance(key, slice):
            return torch.stack([self.decode(i) for i in range(*key.indices(len(self)))])
        return self.decode(int(key))

    def decode(self, index: int) -> torch.Tensor:
        return decode_image(self.files[index], *self.input_shape)

    def cat(self, other: LazyImages) -> LazyImages:
        return LazyImages(self.files + other.files, self.input_shape, self.num_workers)


class FileDataset(torch.utils.data.Dataset):
    """(image, label) pairs for a DataLoader over LazyImages; decoding happens in its worker processes."""

    def __init__(self, images: LazyImages, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.decode(index), self.labels[index]
