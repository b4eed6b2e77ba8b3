"""cnntrain.data.batch_decode gives decode_image's pixels, to the bit, for every kind of file: JPEGs the fast path
takes (every EXIF orientation, grayscale) and those it leaves to Pillow (another size, a colour JPEG to grayscale,
CMYK, PNG), and it names or skips a file that does not decode."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.data.batch_decode import decode_batch, jpeg_header, plan_batch
from cnntrain.data.images import NamedBytes, decode_image
from cnntrain.errors import DataError


def encoded(size=(20, 14), mode="RGB", fmt="JPEG", turn=None, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[1], : size[0]]
    pixels = np.stack([x * 9, y * 13, (x + y) * 5], -1) + rng.normal(0, 25, (size[1], size[0], 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").convert(mode)
    out = io.BytesIO()
    if turn is not None:
        exif = Image.Exif()
        exif[0x0112] = turn
        image.save(out, format=fmt, quality=85, exif=exif)
    else:
        image.save(out, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


CASES = [
    *((f"turn{t}", encoded(turn=t, seed=t), (3, 14, 20) if t < 5 else (3, 20, 14), True) for t in range(1, 9)),
    ("gray-to-gray", encoded(mode="L"), (1, 14, 20), True),
    ("gray-to-rgb", encoded(mode="L"), (3, 14, 20), True),
    ("rgb-to-gray", encoded(), (1, 14, 20), False),
    ("resized", encoded(), (3, 16, 16), False),
    ("progressive", None, (3, 14, 20), True),
    ("cmyk", encoded(mode="CMYK"), (3, 14, 20), False),
    ("png", encoded(fmt="PNG"), (3, 14, 20), False),
]


@pytest.mark.parametrize("name, data, shape, fast", CASES, ids=[c[0] for c in CASES])
def test_a_batch_decodes_as_decode_image_does(name, data, shape, fast, crop=None):
    if data is None:
        out = io.BytesIO()
        Image.open(io.BytesIO(encoded())).save(out, format="JPEG", quality=85, progressive=True)
        data = out.getvalue()
    plan = plan_batch([(name, data)], shape, "crop")
    assert bool(plan.jpegs) == fast
    images, keep, failed = decode_batch([(name, data), (name, data)], shape, "crop")
    expected = decode_image(NamedBytes(data, name), *shape, resize="crop")
    assert keep.all() and not failed
    assert images.dtype == torch.uint8 and torch.equal(images[0], expected) and torch.equal(images[1], expected)


def test_files_on_disk_and_a_bad_image_named_or_skipped(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(encoded())
    bad.write_bytes(encoded()[:-60])  # cut off inside the scan: libjpeg refuses it, Pillow names it
    assert jpeg_header(bad.read_bytes()) is not None
    with pytest.raises(DataError, match="bad.jpg"):
        decode_batch([(str(good), good), (str(bad), bad)], (3, 14, 20))
    images, keep, failed = decode_batch([(str(good), good), (str(bad), bad), ("g", good)], (3, 14, 20), skip_bad=True)
    assert keep.tolist() == [True, False, True] and len(images) == 2
    assert failed[0][0] == str(bad) and "truncated" in failed[0][1]
    assert torch.equal(images[1], decode_image(good, 3, 14, 20))


def test_the_cache_build_processes_do_not_hang_after_the_parent_ran_torch(tmp_path):
    """The decoding processes are forked; torch ops in a child of a process whose OpenMP pool has run hung in the
    first parallel op until the pool's initializer set one thread. A real process, so a hang is a timeout."""
    from helpers import REPO

    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i in range(300):  # two chunks of CHUNK files: the pool is used
        (folder / f"{i}.jpg").write_bytes(encoded(size=(32, 32), seed=i))
    script = (
        "import pathlib, torch; from cnntrain.data.image_cache import decode_files\n"
        "torch.zeros(256, 3, 64, 64).add_(1)\n"
        f"files = sorted(pathlib.Path({str(folder)!r}).glob('*.jpg'))\n"
        "images, bad = decode_files(files, (3, 32, 32), num_workers=2)\n"
        "print(tuple(images.shape), bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(300, 3, 32, 32) []"
