"""Image files -> uint8 tensors shaped like the training data.

The image-folder dataset and `cnntrain-predict` both decode through `decode_image`, so a picture a
user predicts on goes through exactly the conversion the training images went through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnntrain.errors import DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")


def image_input_shape(cfg: Any, first_image: Path) -> tuple[int, int, int]:
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


def decode_image(path: Path, channels: int, height: int, width: int) -> torch.Tensor:
    """Read a PNG/JPEG of any size or colour mode as uint8 [channels, height, width] (L or RGB, bilinear resize)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise DataError(f"cannot convert images to {channels} channels; image inputs have 1 (grayscale) or 3 (RGB)")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {first_line(err)}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()
