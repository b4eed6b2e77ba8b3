"""A Hugging Face dataset's images as uint8 tensors: decoded once into a cache, or per batch (ArrowImages).

Images are read undecoded (Image(decode=False): bytes or a path) and decoded by cnntrain.data.images.decode_image,
as cnntrain-predict decodes. The cache is keyed by the split's fingerprint, the image column, the target shape and
dataset.resize.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from cnntrain.data.image_cache import fallback_cache_dir
from cnntrain.data.images import NamedBytes, decode_image
from cnntrain.data.lazy_images import LazyImages
from cnntrain.data.sources.huggingface_scan import HFScan
from cnntrain.disk import torch_save
from cnntrain.errors import DataError, UserError
from cnntrain.files import atomic_write

CACHE_VERSION = 1


def _as_source(value: Any, where: str, inside: str | None = None) -> Any:
    """An Image(decode=False) value ({'bytes', 'path'}) as what decode_image opens: the bytes, else the path, which
    must lie in `inside` (the dataset's real folder) when that is given: a shared dataset's rows cannot pull files
    from elsewhere into a run and its report (dataset.allow_outside_paths=true allows them)."""
    if isinstance(value, dict) and value.get("bytes"):
        return NamedBytes(value["bytes"], where)
    path = value.get("path") if isinstance(value, dict) else None
    if not path or not isinstance(path, str):
        raise DataError(f"cannot read image {where}: the row holds neither image bytes nor a path")
    if inside is not None and os.path.commonpath([inside, os.path.realpath(path)]) != inside:
        raise DataError(
            f"image {where}: its path {path} leads outside the dataset's folder {inside}; rows name images "
            f"inside it unless dataset.allow_outside_paths=true"
        )
    return Path(path)


def _where(name: str, split: str, row: int) -> str:
    return f"in split '{split}' of {name}, row {row}"


def image_source(scan: HFScan, role: str, row: int) -> Any:
    value = scan.tables[role][row][scan.image_column]
    return _as_source(value, _where(scan.name, scan.split_names[role], row), scan.inside)


def decode_split(scan: HFScan, role: str, shape: tuple[int, int, int], chunk: int = 256) -> torch.Tensor:
    """A split's images as uint8 [N, C, H, W], decoded once and cached (keyed by the split's fingerprint,
    the image column and the shape)."""
    table = scan.tables[role]
    key = json.dumps(
        {
            "version": CACHE_VERSION,
            "fingerprint": scan.fingerprints[role],
            "rows": len(table),
            "column": scan.image_column,
            "shape": list(shape),
            "resize": scan.resize,
        }
    )
    path = scan.cache_root / f"hf-{role}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
    if path.is_file():
        try:
            images = torch.load(path, map_location="cpu", weights_only=True)["images"]
            if tuple(images.shape) == (len(table), *shape) and images.dtype == torch.uint8:
                return images
        except Exception:
            pass
    images = torch.empty((len(table), *shape), dtype=torch.uint8)
    split = scan.split_names[role]
    row = 0
    for batch in table.select_columns([scan.image_column]).iter(batch_size=chunk):
        for value in batch[scan.image_column]:
            source = _as_source(value, _where(scan.name, split, row), scan.inside)
            images[row] = decode_image(source, *shape, resize=scan.resize)
            row += 1
    try:
        atomic_write(path, lambda tmp: torch_save({"images": images}, tmp), root=scan.cache_root.parent)
    except (OSError, UserError):
        pass  # an unwritable cache folder still trains; it just decodes every time
    return images


def cache_root(folder: Path | None, name: str, cache_dir: str | None) -> Path:
    """A folder of this dataset's under dataset.cache_dir (null: the per-user cache, as for image files): never
    inside the dataset's folder, where a shipped cache with a matching fingerprint could stand for its images."""
    return fallback_cache_dir(folder if folder is not None else Path("huggingface") / name, cache_dir)


class ArrowImages(LazyImages):
    """Rows of Hugging Face datasets standing in for a uint8 [N, C, H, W] tensor, as LazyImages does for files:
    `files` holds (role, row) pairs into `tables`, each decoded when read (by DataLoader workers when streamed)."""

    def __init__(
        self,
        scan_name: str,
        tables: dict[str, Any],
        split_names: dict[str, str],
        column: str,
        rows: list[tuple[str, int]],
        input_shape: tuple[int, int, int],
        num_workers: int = 0,
        resize: str = "stretch",
        inside: str | None = None,
    ) -> None:
        super().__init__(rows, input_shape, num_workers, resize=resize)  # type: ignore[arg-type]
        self.scan_name, self.tables, self.split_names, self.column = scan_name, tables, split_names, column
        self.inside = inside

    @classmethod
    def of(cls, scan: HFScan, role: str, shape: tuple[int, int, int], workers: int) -> ArrowImages:
        tables = {role: scan.tables[role].select_columns([scan.image_column])}
        return cls(
            scan.name,
            tables,
            {role: scan.split_names[role]},
            scan.image_column,
            [(role, row) for row in range(len(scan.tables[role]))],
            shape,
            workers,
            scan.resize,
            scan.inside,
        )

    def _with(
        self, rows: list[tuple[str, int]], tables: dict[str, Any] | None = None, names: dict[str, str] | None = None
    ) -> ArrowImages:
        return ArrowImages(
            self.scan_name,
            tables or self.tables,
            names or self.split_names,
            self.column,
            rows,
            self.input_shape,
            self.num_workers,
            self.resize,
            self.inside,
        )

    def decode(self, index: int) -> torch.Tensor:
        role, row = self.files[index]
        value = self.tables[role][row][self.column]
        source = _as_source(value, _where(self.scan_name, self.split_names[role], row), self.inside)
        return decode_image(source, *self.input_shape, resize=self.resize)

    def concat(self, other: ArrowImages) -> ArrowImages:
        return self._with(
            self.files + other.files, {**self.tables, **other.tables}, {**self.split_names, **other.split_names}
        )
