"""Image files -> uint8 tensors shaped like the training data.

Every source of image files and `cnntrain-predict` decode through `decode_image`, so a picture a user predicts
on goes through exactly the conversion the training images went through. In order:

  1. the EXIF orientation is applied (a phone photo taken upright is upright);
  2. the colour becomes L or RGB: 16-bit grayscale is scaled to 8 bits (v * 255 / 65535, rounded), CMYK is
     converted, and transparency (RGBA, LA, palettes with a transparent colour) is composited on black, the
     same black that `pad` fills with: a transparent pixel carries no signal;
  3. the size becomes the input size, as dataset.resize says:
       stretch  resize to height x width, ignoring the aspect ratio (bilinear; the default)
       crop     resize so the image covers the target (its shorter side fits), then cut the centre out
       pad      resize so the image fits inside the target, then centre it on black (letterbox)

GIFs give their first frame. Only regular files are opened (a FIFO or a device named as an image is refused before
it is opened), and an image whose header announces more than MAX_IMAGE_PIXELS is refused with one line before its
pixels are decoded (Pillow's own decompression-bomb warning becomes that error too); Pillow's limits on PNG text
chunks (PngImagePlugin.MAX_TEXT_CHUNK, MAX_TEXT_MEMORY) stay as they are.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cnntrain.config.names import RESIZE_MODES
from cnntrain.errors import DataError, UserError, first_line
from cnntrain.reading import MAX_HASHED_BYTES, open_bounded

if TYPE_CHECKING:  # annotations only: predicting from an exported file imports neither torch nor omegaconf
    import torch

    from cnntrain.config.schema import DatasetConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # compared lower-cased
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
EXIF_ORIENTATION = 0x0112
MAX_IMAGE_FILE_BYTES = MAX_HASHED_BYTES  # an image file, as read and as hashed for the cache key
# EXIF orientation -> PIL.Image.Transpose's value (FLIP_LEFT_RIGHT 0, FLIP_TOP_BOTTOM 1, ROTATE_90 2, ROTATE_180 3,
# ROTATE_270 4, TRANSPOSE 5, TRANSVERSE 6), as ImageOps.exif_transpose turns them
TRANSPOSE_METHODS = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}
MAX_IMAGE_PIXELS = 8192 * 8192  # 67,108,864: a 48-megapixel photo decodes; a 9000x9000 bomb does not

ImageSource = Path | IO[bytes]  # a file, or a binary file object (io.BytesIO from an archive or a parquet row)


class ImageTooLarge(DataError):
    """An image whose header announces more pixels than cnntrain decodes (a server answers it 413, not 400)."""


class NamedBytes(io.BytesIO):
    """Image bytes that name where they came from (a shard and key, a split and row): decode_image's and
    Pillow's messages then point at the sample, not at 'image'."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


def image_input_shape(cfg: DatasetConfig, first_image: Path) -> tuple[int, int, int]:
    """dataset.channels / dataset.image_size when set, else the first image's colour and (upright) size."""
    channels, size = cfg.channels, cfg.image_size
    if channels is None or size is None:
        with open_image(first_image) as image:
            mode, (width, height) = image.mode, image.size
            if orientation(image) in TRANSPOSED_ORIENTATIONS:
                width, height = height, width
        channels = channels if channels is not None else (1 if mode in GRAYSCALE_MODES else 3)
        size = size if size is not None else [height, width]
    return int(channels), int(size[0]), int(size[1])


def decode_image(
    source: ImageSource, channels: int, height: int, width: int, *, resize: str = "stretch"
) -> torch.Tensor:
    """Read an image file (or binary file object) of any size or colour mode as uint8 [channels, height, width]."""
    import torch  # start-up lazy: predicting from an exported file decodes through decode_array with no torch

    return torch.from_numpy(decode_array(source, channels, height, width, resize=resize))


def decode_array(source: ImageSource, channels: int, height: int, width: int, *, resize: str = "stretch") -> np.ndarray:
    """decode_image as a numpy array (what decoding processes send back: no torch needed to pickle it)."""
    if channels not in (1, 3):
        raise DataError(f"cannot convert images to {channels} channels; image inputs have 1 (grayscale) or 3 (RGB)")
    if resize not in RESIZE_MODES:
        raise DataError(f"resize={resize!r}: expected one of {', '.join(RESIZE_MODES)}")
    name = _name(source)
    with open_image(source) as image:
        try:
            image = _upright(image)
            image = _to_mode(image, "L" if channels == 1 else "RGB")
            image = _to_size(image, width, height, resize)
            array = np.asarray(image, dtype=np.uint8)
        except UserError:
            raise
        except Exception as err:  # any decoder's error (a struct.error, an IndexError of a plugin) is a bad image
            raise DataError(f"cannot read image {name}: {first_line(err)}") from None
    array = np.ascontiguousarray(array[None] if channels == 1 else array.transpose(2, 0, 1))
    return array if array.flags.writeable else array.copy()  # Pillow's buffer is read-only


@contextmanager
def open_image(source: ImageSource) -> Iterator[Any]:
    """A Pillow image with only its header read, from a regular file or a file object; a DataError naming the
    source when it is missing, not a regular file, not an image, or larger than MAX_IMAGE_PIXELS."""
    from PIL import Image

    name = _name(source)
    try:
        handle = open_bounded(source, MAX_IMAGE_FILE_BYTES, "image") if isinstance(source, Path) else source
    except FileNotFoundError:
        raise DataError(f"image not found: {name}") from None
    except (OSError, UserError) as err:
        raise DataError(f"cannot read image {name}: {first_line(err)}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(handle)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                found = re.search(r"\((\d+) pixels\)", str(err))
                raise ImageTooLarge(_too_large(name, f"{int(found[1]):,}" if found else "too many")) from None
            except Exception as err:  # not an image, or a plugin's own error on a broken header
                raise DataError(f"cannot read image {name}: {first_line(err)}") from None
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(_too_large(name, f"{width}x{height} = {width * height:,}"))
            yield image
    finally:
        if handle is not source:
            handle.close()


def _too_large(name: str, pixels: str) -> str:
    """The one line for an image over the pixel limit: cnntrain's, or Pillow's when someone set that lower."""
    from PIL import Image

    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is not None and pillow < MAX_IMAGE_PIXELS:
        limit = f"Pillow's limit (PIL.Image.MAX_IMAGE_PIXELS = {pillow:,}) allows"
    else:
        limit = f"the {MAX_IMAGE_PIXELS:,} (8192x8192) cnntrain decodes"
    return f"image {name} is {pixels} pixels, more than {limit}; shrink it or leave it out"


def _name(source: ImageSource) -> str:
    return str(source) if isinstance(source, Path) else str(getattr(source, "name", None) or "image")


def _upright(image: Any) -> Any:
    """The image turned as its EXIF orientation says (before anything else looks at its size)."""
    turn = TRANSPOSE_METHODS.get(orientation(image))
    return image if turn is None else image.transpose(turn)


def orientation(image: Any) -> int:
    """The EXIF orientation (1 to 8), 1 when there is none or it is not one of those whole numbers: EXIF is data
    from the file, and a value of another type (text, a tuple, a fraction) must not reach arithmetic."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # an EXIF block that does not parse: the picture as stored
        return 1
    return value if type(value) is int and 1 <= value <= 8 else 1


def _to_mode(image: Any, mode: str) -> Any:
    """L or RGB: 16-bit scaled (not clipped) to 8 bits, alpha composited on black, palettes and CMYK converted."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.int64).clip(0, 65535)
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info or image.mode in ("PA", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa"):
        image = image.convert("RGBA")
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image).convert("RGB")
    return image if image.mode == mode else image.convert(mode)


def _to_size(image: Any, width: int, height: int, resize: str) -> Any:
    from PIL import Image

    w, h = image.size
    if (w, h) == (width, height):
        return image
    bilinear = Image.Resampling.BILINEAR
    if resize == "stretch":
        return image.resize((width, height), bilinear)
    if resize == "crop":  # cover the target, then cut its centre out
        scale = max(width / w, height / h)
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
        if size != (w, h):
            image = image.resize(size, bilinear)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        return image.crop((left, top, left + width, top + height))
    scale = min(width / w, height / h)  # pad: fit inside the target, centred on black
    size = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
    if size != (w, h):
        image = image.resize(size, bilinear)
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(image, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas
