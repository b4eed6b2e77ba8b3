"""Lists of image files as a split's images: decoded once and cached, or decoded per batch by DataLoader workers.

Every source whose samples are image files (class folders, label files) turns its file lists into images here,
through an ImageReader made from the dataset config: in memory (dataset.in_memory=true) the files are decoded
once and cached (cnntrain.data.image_cache); streamed (false) nothing is decoded up front and LazyImages decode
each batch (cnntrain.data.lazy_images).

Files that do not decode are all collected, not just the first: by default that is one DataError naming the
first and counting the rest; with dataset.skip_bad_images=true they are left out (their labels with them) and
listed in ImageReader.skipped, which the run writes to bad_images.txt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.batch_decode import check_decode_device
from cnntrain.data.containers import ImageContainer
from cnntrain.data.image_cache import ImageFiles, cached_decode
from cnntrain.data.lazy_images import LazyImages, unreadable_headers
from cnntrain.errors import DataError


@dataclass
class ImageReader:
    """How a dataset's image files become images (dataset.in_memory, num_workers, resize, skip_bad_images,
    cache_dir), and the files it had to skip so far, as (file, reason)."""

    in_memory: bool = True
    num_workers: int = 0
    resize: str = "stretch"
    skip_bad: bool = False
    cache_dir: str | None = None
    decode_device: str = "cpu"
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: DatasetConfig) -> ImageReader:
        return cls(
            in_memory=bool(cfg.in_memory),
            num_workers=int(cfg.num_workers),
            resize=str(cfg.resize),
            skip_bad=bool(cfg.skip_bad_images),
            cache_dir=cfg.cache_dir,
            decode_device=str(cfg.decode_device),
        )

    def load(
        self, files: ImageFiles, input_shape: tuple[int, int, int], cache_root: Path, split: str
    ) -> tuple[ImageContainer | torch.Tensor, torch.Tensor]:
        """(images, labels) of one split, without the files that do not decode when skip_bad."""
        if self.in_memory:
            images, bad = cached_decode(
                files,
                input_shape,
                cache_root,
                split,
                resize=self.resize,
                num_workers=self.num_workers,
                cache_dir=self.cache_dir,
            )
        else:
            check_decode_device(self.decode_device)
            images, bad = None, unreadable_headers([path for path, _ in files])
        good = self._apply_policy(files, bad, cache_root)
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
        if images is None:
            lazy = LazyImages(
                [path for path, _ in good],
                input_shape,
                self.num_workers,
                resize=self.resize,
                decode_device=self.decode_device,
            )
            return lazy, labels
        return images, labels

    def _apply_policy(self, files: ImageFiles, bad: list[tuple[int, str]], root: Path) -> ImageFiles:
        if not bad:
            return files
        if not self.skip_bad:
            more = f", and {len(bad) - 1} more file(s) under {root} do not decode either" if len(bad) > 1 else ""
            raise DataError(
                f"{bad[0][1]}{more}; set dataset.skip_bad_images=true to train without them "
                f"(the run lists them in bad_images.txt)"
            )
        self.skipped.extend((files[i][0], reason) for i, reason in bad)
        dropped = {i for i, _ in bad}
        return [pair for i, pair in enumerate(files) if i not in dropped]
