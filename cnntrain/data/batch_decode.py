"""Many images decoded at once, with the pixels decode_image gives one by one: the streamed paths' decoder.

JPEGs that need no resize go to torchvision.io.decode_jpeg as one list (libjpeg-turbo; on the CPU in the
DataLoader workers, or on the GPU with dataset.decode_device=cuda); everything else goes through
cnntrain.data.images.decode_array (Pillow), which also names a bad file as before. Pillow and torchvision both
decode with libjpeg-turbo's defaults (the exact integer IDCT, fancy upsampling), so for the JPEGs taken here (8-bit
baseline or progressive, 1 or 3 components without an Adobe colour transform, at the input size after their EXIF
orientation, a colour JPEG only to RGB: Pillow's grayscale is a luma formula, libjpeg's is the Y plane) the pixels
are the same to the bit (tests/test_stream_pins.py, tests/test_batch_decode.py). The header is read by a short
marker walk, not by Pillow; a file with an Exif segment has its orientation read by Pillow (open_image: the header
only) and applied by flips and transposes, which are exact.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnntrain.data.images import (
    MAX_IMAGE_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    TRANSPOSED_ORIENTATIONS,
    NamedBytes,
    decode_array,
    open_image,
    orientation,
)
from cnntrain.errors import DataError, UserError
from cnntrain.reading import open_bounded, read_bytes

Item = tuple[str, Any]  # (name for messages, a Path or the file's bytes)
HEADER_BYTES = 1 << 16  # where the up-front check looks for a JPEG's frame header (an EXIF thumbnail may be larger)
_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive Huffman: what both decoders read the same way


@dataclass
class Plan:
    """A batch after the CPU's share of the work: the Pillow-decoded images in place, the JPEGs still as bytes
    (position, bytes as a uint8 tensor, EXIF orientation). Picklable: a worker can hand it to the main process,
    which decodes the JPEGs on the GPU (finish)."""

    images: torch.Tensor  # uint8 [n, C, H, W]; the JPEGs' rows are zero until finish()
    jpegs: list[tuple[int, torch.Tensor, int]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (position, reason) of images that do not decode
    names: list[str] = field(default_factory=list)


def warm() -> None:
    """Import torchvision.io here, before DataLoader workers or decoding processes are forked: they inherit it,
    instead of each importing it (a second or more) every epoch."""
    import torchvision.io  # noqa: F401  (lazy: a second to import, needed only where images are decoded)


def check_decode_device(device: str) -> None:
    """DataError when dataset.decode_device names a device this machine lacks."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("dataset.decode_device=cuda: no CUDA device is available here; use dataset.decode_device=cpu")


def jpeg_header(data: bytes) -> tuple[int, int, int, bool] | None:
    """(height, width, components, has Exif) of a JPEG both decoders read alike, else None (a marker walk up to
    the first scan; any oddity sends the file to Pillow)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, n, exif, frame = 2, len(data), False, None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            exif = True
        elif marker == 0xEE and body[:5] == b"Adobe":
            return None
        elif marker in _SOF:
            if frame is not None or len(body) < 6 or body[0] != 8:
                return None
            frame = (int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5])
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # lossless, arithmetic, hierarchical
            return None
        elif marker == 0xDA:
            if frame is None or frame[2] not in (1, 3) or not frame[0] or not frame[1]:
                return None
            return frame[0], frame[1], frame[2], exif
        pos += 2 + length
    return None


def header_reads(path: Path) -> bool:
    """Whether a file is a JPEG whose header the marker walk reads (within its first HEADER_BYTES), at most
    MAX_IMAGE_PIXELS: then Pillow's open would read it too, and the streamed folder's up-front check needs no
    Pillow object for it (False: ask Pillow)."""
    try:
        with open_bounded(path, MAX_IMAGE_FILE_BYTES, "image") as handle:
            header = jpeg_header(handle.read(HEADER_BYTES))
    except (OSError, UserError):
        return False
    return header is not None and header[0] * header[1] <= MAX_IMAGE_PIXELS


def plan_batch(
    items: list[Item],
    shape: tuple[int, int, int],
    resize: str,
    *,
    skip_bad: bool = False,
    out: torch.Tensor | None = None,
) -> Plan:
    """Read the bytes, decode what must go through Pillow, and line up the JPEGs (DataError on the first image
    that does not decode, unless skip_bad: then its position and reason are in Plan.failed). `out`: a uint8
    [len(items), C, H, W] tensor to decode into (the cache build's shared array), else a new one."""
    channels, height, width = shape
    images = torch.zeros((len(items), *shape), dtype=torch.uint8) if out is None else out
    plan = Plan(images, names=[name for name, _ in items])
    for i, (name, source) in enumerate(items):
        try:
            data = _bytes(source)
            header = jpeg_header(data) if data is not None else None
            turn = _fast(header, data, name, channels, height, width) if header is not None else None
            if turn is not None:
                plan.jpegs.append((i, torch.frombuffer(bytearray(data), dtype=torch.uint8), turn))
                continue
            picture = source if data is None else NamedBytes(data, name)
            plan.images[i] = torch.from_numpy(decode_array(picture, channels, height, width, resize=resize))
        except DataError as err:
            if not skip_bad:
                raise
            plan.failed.append((i, str(err)))
    return plan


def finish(plan: Plan, shape: tuple[int, int, int], resize: str, device: Any = "cpu", *, skip_bad: bool = False):
    """(images on `device` less the failed ones, labels' keep mask, failures): the JPEGs decoded as one list."""
    images = plan.images.to(device)
    if plan.jpegs:
        decoded = _decode_jpegs([data for _, data, _ in plan.jpegs], shape[0], device)
        for (i, data, turn), image in zip(plan.jpegs, decoded):
            if image is None:  # libjpeg refused it: Pillow decodes it or names the fault
                try:
                    name = plan.names[i]
                    array = decode_array(NamedBytes(data.numpy().tobytes(), name), *shape, resize=resize)
                    images[i] = torch.from_numpy(array).to(device)
                except DataError as err:
                    if not skip_bad:
                        raise
                    plan.failed.append((i, str(err)))
                continue
            images[i] = _turned(image, turn)
    keep = torch.ones(len(images), dtype=torch.bool)
    if plan.failed:
        plan.failed.sort()
        keep[[i for i, _ in plan.failed]] = False
        images = images[keep.to(images.device)]
    return images, keep, [(plan.names[i], reason) for i, reason in plan.failed]


def decode_batch(
    items: list[Item], shape: tuple[int, int, int], resize: str = "stretch", *, skip_bad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """plan_batch then finish on the CPU: (uint8 [kept, C, H, W], keep mask, (name, reason) of those left out)."""
    return finish(plan_batch(items, shape, resize, skip_bad=skip_bad), shape, resize, skip_bad=skip_bad)


def _bytes(source: Any) -> bytes | None:
    """A file's bytes (bounded; None when it cannot be read: Pillow's path then names the fault)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    try:
        return read_bytes(Path(source), MAX_IMAGE_FILE_BYTES, "image")
    except (OSError, UserError):
        return None


def _fast(header: tuple, data: bytes, name: str, channels: int, height: int, width: int) -> int | None:
    """The EXIF orientation when decode_jpeg gives decode_array's pixels for this JPEG, else None."""
    h, w, components, exif = header
    if channels == 1 and components != 1 or h * w > MAX_IMAGE_PIXELS:
        return None
    turn = 1
    if exif:
        with open_image(NamedBytes(data, name)) as image:
            turn = orientation(image)
    if turn in TRANSPOSED_ORIENTATIONS:
        h, w = w, h
    return turn if (h, w) == (height, width) else None


def _decode_jpegs(datas: list[torch.Tensor], channels: int, device: Any) -> list[torch.Tensor | None]:
    """decode_jpeg on the list (one call); when the call fails, one by one (None for each that fails)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice that its decoders may move to TorchCodec
        try:
            return list(decode_jpeg(datas, mode=mode, device=device))
        except (RuntimeError, ValueError, TypeError):
            pass
        out: list[torch.Tensor | None] = []
        for data in datas:
            try:
                out.append(decode_jpeg(data, mode=mode, device=device))
            except (RuntimeError, ValueError):
                out.append(None)
        return out


def _turned(image: torch.Tensor, turn: int) -> torch.Tensor:
    """An EXIF orientation applied to [C, H, W] as Pillow's transpose does (images._upright)."""
    if turn == 2:
        return image.flip(2)
    if turn == 3:
        return image.flip(1, 2)
    if turn == 4:
        return image.flip(1)
    if turn == 5:
        return image.transpose(1, 2)
    if turn == 6:
        return torch.rot90(image, -1, (1, 2))
    if turn == 7:
        return image.transpose(1, 2).flip(1, 2)
    if turn == 8:
        return torch.rot90(image, 1, (1, 2))
    return image
