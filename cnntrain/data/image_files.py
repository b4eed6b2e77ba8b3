"""Lists of image files as uint8 tensors: decoded once and cached, or decoded per batch by DataLoader workers.

Every source whose samples are image files (class folders, label files) turns its file lists into tensors
here, through an ImageReader made from the dataset config.

In memory (dataset.in_memory=true), the files are decoded once, by dataset.num_workers processes in chunks (0:
in this process; the result is the same to the bit), and cached, so a second run loads one file instead of
decoding again. The cache is never beside the data, where a dataset archive could ship one of its own: it is in
dataset.cache_dir (null: $XDG_CACHE_HOME/cnntrain or ~/.cache/cnntrain), in a sub-folder named by the data
folder's absolute path, so two datasets never collide. It is keyed by a hash of every file's bytes (reading and
hashing 5,000 small PNGs took 0.12-0.15 of decoding them: benchmarks/cache_key.py), with the files' names and
labels, the target shape and dataset.resize, so any change to the files decodes afresh, whatever their sizes and
times say; and it holds the labels it was made for, checked on load: a cache that does not match is decoded
again, with a notice.

Files that do not decode are all collected, not just the first: by default that is one DataError naming the
first and counting the rest; with dataset.skip_bad_images=true they are left out (their labels with them) and
listed in ImageReader.skipped, which the run writes to bad_images.txt.

Streamed (dataset.in_memory=false) nothing is decoded up front: LazyImages stands in for the image tensor and
batches are decoded by DataLoader workers (for data too large for memory). Decoding every file first would
cost the pass streaming avoids, so the files are only opened (Pillow reads the header: the format, the size):
files that are not images, empty or cut off before the header fail there, under the same policy. A file whose
header reads but whose pixels do not (cut off mid-data) still stops the run when a batch reaches it, naming it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnntrain.data.images import decode_array, decode_image, open_image
from cnntrain.disk import torch_save
from cnntrain.errors import DataError, UserError
from cnntrain.files import atomic_write, regular_fd

CACHE_VERSION = 3  # 2: keyed by dataset.resize; holds the undecodable files. 3: keyed by content, holds labels
CHUNK = 256  # files per task of the decoding processes
PROGRESS_FROM = 1000  # images: fewer decode in a moment, with no bar

ImageFiles = list[tuple[Path, int]]
"""(file, label) pairs of one split, in the split's order."""


@dataclass
class ImageReader:
    """How a dataset's image files become tensors (dataset.in_memory, num_workers, resize, skip_bad_images,
    cache_dir), and the files it had to skip so far, as (file, reason)."""

    in_memory: bool = True
    num_workers: int = 0
    resize: str = "stretch"
    skip_bad: bool = False
    cache_dir: str | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: Any) -> ImageReader:
        return cls(in_memory=bool(cfg.get("in_memory", True)), num_workers=int(cfg.get("num_workers") or 0),
                   resize=str(cfg.get("resize") or "stretch"), skip_bad=bool(cfg.get("skip_bad_images", False)),
                   cache_dir=cfg.get("cache_dir"))

    def load(self, files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path,
             split: str) -> tuple[Any, torch.Tensor]:
        """(images, labels) of one split, without the files that do not decode when skip_bad."""
        if self.in_memory:
            images, bad = self._cached_decode(files, input_shape, cache_root, split)
        else:
            images, bad = None, _unreadable_headers([path for path, _ in files])
        good = self._apply_policy(files, bad, cache_root)
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
        if images is None:
            return LazyImages([path for path, _ in good], input_shape, self.num_workers, resize=self.resize), labels
        return images, labels

    def _apply_policy(self, files: ImageFiles, bad: list[tuple[int, str]], root: Path) -> ImageFiles:
        if not bad:
            return files
        if not self.skip_bad:
            more = f", and {len(bad) - 1} more file(s) under {root} do not decode either" if len(bad) > 1 else ""
            raise DataError(f"{bad[0][1]}{more}; set dataset.skip_bad_images=true to train without them "
                            f"(the run lists them in bad_images.txt)")
        self.skipped.extend((files[i][0], reason) for i, reason in bad)
        dropped = {i for i, _ in bad}
        return [pair for i, pair in enumerate(files) if i not in dropped]

    def _cached_decode(self, files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path,
                       split: str) -> tuple[torch.Tensor, list[tuple[int, str]]]:
        path = cache_path(files, input_shape, cache_root, split, resize=self.resize, cache_dir=self.cache_dir)
        labels = [label for _, label in files]
        if path is not None:
            cached = _read_cache(path, labels, input_shape)
            if cached is not None:
                return cached
        images, bad = decode_files([path for path, _ in files], input_shape, resize=self.resize,
                                   num_workers=self.num_workers)
        if path is not None:
            payload = {"images": images, "bad": [i for i, _ in bad], "errors": [reason for _, reason in bad],
                       "labels": labels}
            try:
                atomic_write(path, lambda tmp: torch_save(payload, tmp), root=cache_base(self.cache_dir))
            except (OSError, UserError):
                pass  # an unwritable cache folder still trains; it just decodes every time
        return images, bad


def load_files(files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str,
               in_memory: bool = True, num_workers: int = 0, *, resize: str = "stretch") -> tuple[Any, torch.Tensor]:
    """(images, labels) of one split: decoded (or read from the cache) when in_memory, else LazyImages that decode
    per batch. The first undecodable file stops it (ImageReader can skip them instead)."""
    return ImageReader(in_memory, num_workers, resize).load(files, input_shape, cache_root, split)


def cache_path(files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str, *,
               resize: str = "stretch", cache_dir: str | None = None) -> Path | None:
    """The cache file for these exact files (by content), labels, target shape and resize mode, in this data
    folder's cache folder; None when a file cannot be read to hash it (decoding then names it)."""
    digest = content_digest([path for path, _ in files])
    if digest is None:
        return None
    listing = [[_relative(p, cache_root), label] for p, label in files]
    text = json.dumps({"version": CACHE_VERSION, "shape": list(input_shape), "resize": resize, "files": listing,
                       "content": digest})
    return fallback_cache_dir(cache_root, cache_dir) / f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def content_digest(paths: list[Path]) -> str | None:
    """A SHA-256 over every file's bytes, in order (None when one is missing, unreadable or not a regular file)."""
    total = hashlib.sha256()
    try:
        for path in paths:
            fd = regular_fd(path)
            try:
                digest = hashlib.sha256()
                while chunk := os.read(fd, 1 << 20):
                    digest.update(chunk)
            finally:
                os.close(fd)
            total.update(digest.digest())
    except (OSError, UserError):
        return None
    return total.hexdigest()


def fallback_cache_dir(cache_root: Path, cache_dir: str | None = None) -> Path:
    """The cache folder of one data folder: a folder per data folder (by its absolute path) under
    dataset.cache_dir, or the per-user cache folder; never inside the data, where an archive could ship one."""
    return cache_base(cache_dir) / hashlib.sha256(str(cache_root.resolve()).encode()).hexdigest()[:16]


def cache_base(cache_dir: str | None = None) -> Path:
    """dataset.cache_dir, or $XDG_CACHE_HOME/cnntrain (~/.cache/cnntrain): the root every cache write stays in."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cnntrain"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path.resolve())


def _read_cache(path: Path, labels: list[int], input_shape: tuple[int, int, int]
                ) -> tuple[torch.Tensor, list[tuple[int, str]]] | None:
    """The cached (images, bad) when the file holds what this key stands for: the images of these labels' files,
    less the bad ones, at this shape; else None, with a one-line notice when a file was there (it is rebuilt)."""
    if not path.is_file():
        return None
    count = len(labels)
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        images, bad = cached["images"], list(zip(cached["bad"], cached["errors"]))
        if (isinstance(images, torch.Tensor) and tuple(images.shape) == (count - len(bad), *input_shape)
                and images.dtype == torch.uint8 and cached.get("labels") == labels
                and all(isinstance(i, int) and 0 <= i < count and isinstance(r, str) for i, r in bad)):
            return images, bad
        found = f"{tuple(images.shape)[0] if isinstance(images, torch.Tensor) else '?'} images"
    except Exception:
        found = "an unreadable file"
    print(f"notice: the image cache {path} holds {found}, not the {count} files and labels it is keyed by; "
          f"decoding them again", file=sys.stderr, flush=True)
    return None


def decode_files(paths: list[Path], input_shape: tuple[int, int, int], *, resize: str = "stretch",
                 num_workers: int = 0) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """The images that decode, as uint8 [N - bad, C, H, W] in the files' order, and the (index, reason) of each
    that does not. num_workers > 0 decodes in that many processes, CHUNK files per task, when there is more than
    one chunk (a bar on a terminal when there are many); the result is identical to num_workers=0."""
    n = len(paths)
    out = np.empty((n, *input_shape), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    chunks = -(-n // CHUNK)  # one chunk decodes in this process: a pool would only add its start-up
    workers = 0 if chunks < 2 or multiprocessing.current_process().daemon else min(num_workers, chunks)
    with _progress(n) as advance:
        if workers <= 0:
            for i, path in enumerate(paths):
                bad.extend((i, r) for _, r in _decode_into(out[i:i + 1], [path], input_shape, resize))
                advance(1)
        else:
            with ProcessPoolExecutor(workers) as pool:
                tasks = {pool.submit(_decode_chunk, paths[lo:lo + CHUNK], input_shape, resize): lo
                         for lo in range(0, n, CHUNK)}
                for task in as_completed(tasks):
                    lo = tasks[task]
                    array, failed = task.result()
                    out[lo:lo + len(array)] = array
                    bad.extend((lo + i, reason) for i, reason in failed)
                    advance(len(array))
    bad.sort()
    images = torch.from_numpy(out)
    if bad:
        keep = torch.ones(n, dtype=torch.bool)
        keep[[i for i, _ in bad]] = False
        images = images[keep]
    return images, bad


def _decode_chunk(paths: list[Path], input_shape: tuple[int, int, int],
                  resize: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """One task of a decoding process: numpy in, numpy out (cheap to send back)."""
    array = np.zeros((len(paths), *input_shape), dtype=np.uint8)
    return array, _decode_into(array, paths, input_shape, resize)


def _decode_into(out: np.ndarray, paths: list[Path], input_shape: tuple[int, int, int],
                 resize: str) -> list[tuple[int, str]]:
    failed = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_array(path, *input_shape, resize=resize)
        except DataError as err:
            out[i] = 0
            failed.append((i, str(err)))
    return failed


class _progress:
    """advance(k) on a transient rich bar on stderr when it is a terminal and there are many images, else nothing."""

    def __init__(self, total: int) -> None:
        self.total, self.bar, self.task = total, None, None

    def __enter__(self) -> Any:
        from rich.console import Console

        console = Console(stderr=True)
        if self.total >= PROGRESS_FROM and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("decoding images"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("decode", total=self.total)
        return lambda k: self.bar.advance(self.task, k) if self.bar is not None else None

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _unreadable_headers(paths: list[Path]) -> list[tuple[int, str]]:
    """(index, reason) of the files Pillow cannot even open (the header: format and size), without decoding."""
    bad = []
    for i, path in enumerate(paths):
        try:
            with open_image(path):
                pass
        except DataError as err:
            bad.append((i, str(err)))
    return bad


class LazyImages:
    """Image files standing in for a uint8 [N, C, H, W] tensor, decoded only when read.

    Indexing with an index tensor selects files (no decoding), as the train/val/test split does;
    an int or a slice decodes those images. `to(device)` is a no-op: batches move when they are read.
    """

    def __init__(self, files: list[Path], input_shape: tuple[int, int, int], num_workers: int = 0, *,
                 resize: str = "stretch") -> None:
        self.files = files
        self.input_shape = input_shape
        self.num_workers = num_workers
        self.resize = resize

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.input_shape))

    def __len__(self) -> int:
        return len(self.files)

    def to(self, device: Any) -> LazyImages:
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, torch.Tensor):
            return self._with([self.files[i] for i in key.tolist()])
        if isinstance(key, slice):
            return torch.stack([self.decode(i) for i in range(*key.indices(len(self)))])
        return self.decode(int(key))

    def decode(self, index: int) -> torch.Tensor:
        return decode_image(self.files[index], *self.input_shape, resize=self.resize)

    def cat(self, other: LazyImages) -> LazyImages:
        return self._with(self.files + other.files)

    def _with(self, files: list[Path]) -> LazyImages:
        return LazyImages(files, self.input_shape, self.num_workers, resize=self.resize)


class FileDataset(torch.utils.data.Dataset):
    """(image, label) pairs for a DataLoader over LazyImages; decoding happens in its worker processes."""

    def __init__(self, images: LazyImages, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.decode(index), self.labels[index]
