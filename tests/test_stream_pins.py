"""The same samples in the same order, bit for bit, on every image path (issue 34): the sha256 of the first batches
an epoch gives for a seed, recorded before the streamed paths were made faster, so a faster decode or hand-off
that changed a pixel, a label or the order fails here.

The data are generated JPEGs (what the fast decode takes: RGB and grayscale, at the input size and not, one with an
EXIF orientation) and PNGs (decoded by Pillow as before), as a class folder (the cache and the streamed folder) and
as WebDataset shards. The pins hold for the JPEG encoder of the Pillow these tests run on (the JPEG bytes are
pinned too, so a different encoder is told apart from a changed decoder).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.data.containers import TensorSplit, iterate_batches
from cnntrain.data.image_files import ImageReader
from cnntrain.data.loading import load_data
from cnntrain.data.sources.class_folders import scan_folder

from helpers import compose_config, dataset_section

SIZE = 24
FIRST = 3  # batches hashed per path
BATCH = 16
PINS = {
    "files": "8e742cde45c6b97283f8b12fa6eadad19ab15ad51532836ee3c6146378df0ece",
    "cache": "6eacfff881ae24cd765e0080361a9d76419e98afbd32d6e6dd679ff5e6eba832",
    "streamed": "6eacfff881ae24cd765e0080361a9d76419e98afbd32d6e6dd679ff5e6eba832",
    "streamed-workers": "6eacfff881ae24cd765e0080361a9d76419e98afbd32d6e6dd679ff5e6eba832",
    "shards-train": "4c60e701a9a737564df6a2d7cee0504095bdae8cde0b8e7bdb0d78bb01ce3764",
    "shards-test": "c19a3051442fece9b5ee304ec8f5a0af3f66bb69e400e63d658c00ad2c71a047",
}


def picture(i: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """Sample i: mostly RGB JPEGs at the input size; every 7th grayscale, every 5th another size, every 9th a PNG,
    and sample 4 a JPEG with an EXIF orientation (turned by the decoder)."""
    side = (SIZE + 8, SIZE - 4) if i % 5 == 3 else (SIZE, SIZE)
    y, x = np.mgrid[: side[1], : side[0]] / SIZE
    a, b, c = rng.uniform(0, 255, 3)
    base = np.stack([a * x, b * y, c * (1 - x) * y], axis=-1)
    pixels = (base + rng.normal(0, 20, base.shape)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if i % 7 == 6:
        image = image.convert("L")
    out = io.BytesIO()
    if i % 9 == 8:
        image.save(out, format="PNG")
        return "png", out.getvalue()
    if i == 4:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(out, format="JPEG", quality=90, exif=exif)
    else:
        image.save(out, format="JPEG", quality=90)
    return "jpg", out.getvalue()


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> tuple[Path, list[tuple[str, str, bytes, int]]]:
    """90 samples (key, suffix, bytes, label) of 3 classes, written as a class folder under root/train."""
    root = tmp_path_factory.mktemp("pins")
    rng = np.random.default_rng(34)
    samples = []
    for i in range(90):
        label = i % 3
        suffix, data = picture(i, rng)
        samples.append((f"s{i:04d}", suffix, data, label))
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{i:04d}.{suffix}").write_bytes(data)
    return root, samples


def digest(batches, first: int = FIRST) -> str:
    total = hashlib.sha256()
    for _, (images, labels, *rest) in zip(range(first), batches):
        for tensor in (images, labels, *rest):
            total.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            total.update(tensor.contiguous().cpu().numpy().tobytes())
    return total.hexdigest()


def folder_batches(root: Path, in_memory: bool, workers: int, cache: Path) -> str:
    files = scan_folder(dataset_section({"root": str(root), "kind": "imagefolder"})).train_files
    reader = ImageReader(in_memory=in_memory, num_workers=workers, cache_dir=str(cache))
    images, labels = reader.load(files, (3, SIZE, SIZE), root, "pins")
    split = TensorSplit(images, labels)
    return digest(iterate_batches(split, BATCH, shuffle=True, generator=torch.Generator().manual_seed(5)))


def test_the_inputs_are_the_pinned_jpegs(drawn):
    _, samples = drawn
    total = hashlib.sha256(b"".join(data for _, _, data, _ in samples)).hexdigest()
    assert total == PINS["files"], total


def test_the_cache_gives_the_pinned_batches(drawn, tmp_path):
    assert folder_batches(drawn[0], True, 0, tmp_path) == PINS["cache"]


@pytest.mark.parametrize("workers", [0, 2])
def test_the_streamed_folder_gives_the_pinned_batches(drawn, tmp_path, workers):
    key = "streamed-workers" if workers else "streamed"
    assert folder_batches(drawn[0], False, workers, tmp_path) == PINS[key]


def test_the_shards_give_the_pinned_batches(drawn, tmp_path, monkeypatch):
    import webdataset as wds

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the shard index is cached there
    _, samples = drawn
    with wds.ShardWriter(str(tmp_path / "train-%06d.tar"), maxcount=20, verbose=0) as sink:
        for key, suffix, data, label in samples[:80]:
            sink.write({"__key__": key, suffix: data, "cls": str(label)})
    with wds.ShardWriter(str(tmp_path / "test-%06d.tar"), maxcount=6, verbose=0) as sink:
        for key, suffix, data, label in samples[80:]:
            sink.write({"__key__": key, suffix: data, "cls": str(label)})
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    cfg = compose_config(
        "dataset=webdataset",
        f"dataset.train='{tmp_path}/train-{{000000..000003}}.tar'",
        f"dataset.test='{tmp_path}/test-{{000000..000001}}.tar'",
        "dataset.num_workers=2",
        "dataset.shuffle_buffer=10",
        f"dataset.image_size=[{SIZE},{SIZE}]",
        "dataset.channels=3",
        "dataset.mean=[0.5,0.5,0.5]",
        "dataset.std=[0.25,0.25,0.25]",
    )
    data = load_data(cfg.dataset, seed=3)
    train = digest(iterate_batches(data.train, BATCH, shuffle=True, generator=torch.Generator().manual_seed(5)))
    test = digest(data.test.images.indexed_batches(4), first=10)
    assert (train, test) == (PINS["shards-train"], PINS["shards-test"]), (train, test)
