"""Image files decoded once into a uint8 tensor and cached, so a second run loads one file instead of decoding.

dataset.num_workers processes decode in chunks (0: in this process; the result is the same to the bit). The
cache is never beside the data, where a dataset archive could ship one of its own: it is in dataset.cache_dir
(null: $XDG_CACHE_HOME/cnntrain or ~/.cache/cnntrain), in a sub-folder named by the data folder's absolute path,
so two datasets never collide. It is keyed by a hash of every file's bytes (reading and hashing 5,000 small PNGs
took 0.12-0.15 of decoding them: benchmarks/cache_key.py), with the files' names and labels, the target shape and
dataset.resize, so any change to the files decodes afresh, whatever their sizes and times say; and it holds the
labels it was made for, checked on load: a cache that does not match is decoded again, with a notice.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cnntrain.data.batch_decode import finish, plan_batch, warm
from cnntrain.disk import torch_save
from cnntrain.errors import UserError
from cnntrain.files import atomic_write
from cnntrain.reading import MAX_HASHED_BYTES, hash_file

CACHE_VERSION = 3  # 2: keyed by dataset.resize; holds the undecodable files. 3: keyed by content, holds labels
CHUNK = 256  # files per task of the decoding processes
SHARED_DIR = "/dev/shm"  # the decoding processes' shared array (tmpfs: memory, not disk)
PROGRESS_FROM = 1000  # images: fewer decode in a moment, with no bar

ImageFiles = list[tuple[Path, int]]
"""(file, label) pairs of one split, in the split's order."""


def cached_decode(
    files: ImageFiles,
    input_shape: tuple[int, int, int],
    cache_root: Path,
    split: str,
    *,
    resize: str = "stretch",
    num_workers: int = 0,
    cache_dir: str | None = None,
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """(images that decode, (index, reason) of each file that does not): from the cache when it holds these
    files, else decoded and written to it."""
    path = cache_path(files, input_shape, cache_root, split, resize=resize, cache_dir=cache_dir)
    labels = [label for _, label in files]
    if path is not None:
        cached = _read_cache(path, labels, input_shape)
        if cached is not None:
            return cached
    images, bad = decode_files([path for path, _ in files], input_shape, resize=resize, num_workers=num_workers)
    if path is not None:
        payload = {
            "images": images,
            "bad": [i for i, _ in bad],
            "errors": [reason for _, reason in bad],
            "labels": labels,
        }
        try:
            atomic_write(path, lambda tmp: torch_save(payload, tmp), root=cache_base(cache_dir))
        except (OSError, UserError):
            pass  # an unwritable cache folder still trains; it just decodes every time
    return images, bad


def cache_path(
    files: ImageFiles,
    input_shape: tuple[int, int, int],
    cache_root: Path,
    split: str,
    *,
    resize: str = "stretch",
    cache_dir: str | None = None,
) -> Path | None:
    """The cache file for these exact files (by content), labels, target shape and resize mode, in this data
    folder's cache folder; None when a file cannot be read to hash it (decoding then names it)."""
    digest = content_digest([path for path, _ in files])
    if digest is None:
        return None
    listing = [[_relative(p, cache_root), label] for p, label in files]
    text = json.dumps(
        {"version": CACHE_VERSION, "shape": list(input_shape), "resize": resize, "files": listing, "content": digest}
    )
    return fallback_cache_dir(cache_root, cache_dir) / f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def content_digest(paths: list[Path]) -> str | None:
    """A SHA-256 over every file's bytes, in order (None when one is missing, unreadable or not a regular file)."""
    total = hashlib.sha256()
    try:
        for path in paths:
            digest = hashlib.sha256()
            hash_file(path, digest, MAX_HASHED_BYTES, "image")  # bounded, in chunks: never /proc, a FIFO, a hole
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


def _read_cache(
    path: Path, labels: list[int], input_shape: tuple[int, int, int]
) -> tuple[torch.Tensor, list[tuple[int, str]]] | None:
    """The cached (images, bad) when the file holds what this key stands for: the images of these labels' files,
    less the bad ones, at this shape; else None, with a one-line notice when a file was there (it is rebuilt)."""
    if not path.is_file():
        return None
    count = len(labels)
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        images, bad = cached["images"], list(zip(cached["bad"], cached["errors"]))
        if (
            isinstance(images, torch.Tensor)
            and tuple(images.shape) == (count - len(bad), *input_shape)
            and images.dtype == torch.uint8
            and cached.get("labels") == labels
            and all(isinstance(i, int) and 0 <= i < count and isinstance(r, str) for i, r in bad)
        ):
            return images, bad
        found = f"{tuple(images.shape)[0] if isinstance(images, torch.Tensor) else '?'} images"
    except Exception:
        found = "an unreadable file"
    print(
        f"notice: the image cache {path} holds {found}, not the {count} files and labels it is keyed by; "
        f"decoding them again",
        file=sys.stderr,
        flush=True,
    )
    return None


def decode_files(
    paths: list[Path], input_shape: tuple[int, int, int], *, resize: str = "stretch", num_workers: int = 0
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """The images that decode, as uint8 [N - bad, C, H, W] in the files' order, and the (index, reason) of each
    that does not. num_workers > 0 decodes in that many processes, CHUNK files per task, when there is more than
    one chunk (a bar on a terminal when there are many); the result is identical to num_workers=0."""
    n = len(paths)
    out = np.empty((n, *input_shape), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    warm()
    chunks = -(-n // CHUNK)  # one chunk decodes in this process: a pool would only add its start-up
    workers = 0 if chunks < 2 or multiprocessing.current_process().daemon else min(num_workers, chunks)
    with _progress(n) as advance:
        if workers <= 0:
            for lo in range(0, n, CHUNK):
                chunk = paths[lo : lo + CHUNK]
                bad.extend((lo + i, r) for i, r in _decode_into(out[lo : lo + len(chunk)], chunk, input_shape, resize))
                advance(len(chunk))
        else:
            with _shared(out.shape) as (shared, place), ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
                tasks = {
                    pool.submit(_decode_chunk, paths[lo : lo + CHUNK], input_shape, resize, place, lo): lo
                    for lo in range(0, n, CHUNK)
                }
                for task in as_completed(tasks):
                    lo = tasks[task]
                    array, failed = task.result()
                    if array is not None:
                        out[lo : lo + len(array)] = array
                    bad.extend((lo + i, reason) for i, reason in failed)
                    advance(min(CHUNK, n - lo))
                if shared is not None:
                    out[:] = shared
    bad.sort()
    images = torch.from_numpy(out)
    if bad:
        keep = torch.ones(n, dtype=torch.bool)
        keep[[i for i, _ in bad]] = False
        images = images[keep]
    return images, bad


def _one_thread() -> None:
    """A decoding process runs torch ops on one thread, as a DataLoader worker does: a process forked from one whose
    OpenMP pool has run would hang in its first parallel op (seen here with the 224x224 benchmark)."""
    torch.set_num_threads(1)


class _shared:
    """An array the decoding processes write into (a file in /dev/shm, mapped by each), so 38 MB chunks of 224x224
    images are not pickled back through a pipe; (None, None) where /dev/shm is missing or lacks room (a container's
    64 MB default): the chunks then come back as arrays."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape, self.path = shape, None

    def __enter__(self) -> tuple[np.ndarray | None, tuple | None]:
        size = int(np.prod(self.shape))
        try:
            room = os.statvfs(SHARED_DIR)
            if size == 0 or room.f_bavail * room.f_frsize < 2 * size:
                return None, None
            handle, self.path = tempfile.mkstemp(prefix="cnntrain-decode-", dir=SHARED_DIR)
            os.close(handle)
            array = np.memmap(self.path, dtype=np.uint8, mode="w+", shape=self.shape)
        except OSError:
            return None, None
        return array, (self.path, self.shape)

    def __exit__(self, *exc: Any) -> None:
        if self.path is not None:
            Path(self.path).unlink(missing_ok=True)


def _decode_chunk(
    paths: list[Path], input_shape: tuple[int, int, int], resize: str, place: tuple | None, lo: int
) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """One task of a decoding process: into the shared array at `place` (nothing sent back but the failures), or
    numpy out."""
    if place is None:
        array = np.zeros((len(paths), *input_shape), dtype=np.uint8)
        return array, _decode_into(array, paths, input_shape, resize)
    shared = np.memmap(place[0], dtype=np.uint8, mode="r+", shape=place[1])
    failed = _decode_into(shared[lo : lo + len(paths)], paths, input_shape, resize)
    del shared
    return None, failed


def _decode_into(
    out: np.ndarray, paths: list[Path], input_shape: tuple[int, int, int], resize: str
) -> list[tuple[int, str]]:
    """Decode `paths` into `out` together (cnntrain.data.batch_decode: the pixels decode_image gives, JPEGs at
    the input size as one decode_jpeg list); a file that does not decode leaves zeros and its (index, reason)."""
    items = [(str(path), path) for path in paths]
    plan = plan_batch(items, input_shape, resize, skip_bad=True, out=torch.from_numpy(out))  # decoded in place
    finish(plan, input_shape, resize, skip_bad=True)
    out[[i for i, _ in plan.failed]] = 0
    return list(plan.failed)


class _progress:
    """advance(k) on a transient rich bar on stderr when it is a terminal and there are many images, else nothing."""

    def __init__(self, total: int) -> None:
        self.total, self.bar, self.task = total, None, None

    def __enter__(self) -> Any:
        console = Console(stderr=True)
        if self.total >= PROGRESS_FROM and console.is_terminal:
            self.bar = Progress(
                TextColumn("decoding images"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("decode", total=self.total)
        return lambda k: self.bar.advance(self.task, k) if self.bar is not None else None

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
