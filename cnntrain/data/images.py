"""Image files -> uint8 tensors shaped like the training data.

The image-folder dataset and `cnntrain-predict` both decode through `decode_image`, so a picture a
user predicts on goes through exactly the conversion the training images went through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnntrain.errors import DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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
