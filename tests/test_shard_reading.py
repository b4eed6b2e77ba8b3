"""How shards are read since issue 34: cnntrain.data.shard_tar's parser against Python's tarfile (pax, GNU and
ustar long names, links and folders passed over, a cut-off or foreign file one line), the index's image spans
(used when a shard is regular, the tar walked when it is not: the same chunks either way), dataset.skip_bad_images
on shards, and dataset.decode_device's checks and data line."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnntrain.config.compose import compose_train
from cnntrain.config.validate import validate
from cnntrain.data.containers import TensorSplit, iterate_batches
from cnntrain.data.loading import load_data
from cnntrain.data.shard_index import read_index, split_name
from cnntrain.data.shard_tar import members
from cnntrain.data.stream_parts import KeyRule
from cnntrain.data.streams import StreamedImages
from cnntrain.errors import ConfigError, DataError

from helpers import compose_config
from synthetic_images import CLASSES, draw

wds = pytest.importorskip("webdataset")


def png(seed: int) -> bytes:
    out = io.BytesIO()
    draw(seed % 3, 8, np.random.default_rng(seed), rgb=False).save(out, format="PNG")
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_the_parser_reads_what_tarfile_reads(tmp_path, fmt):
    path = tmp_path / "a.tar"
    long_dir = "d" * 90 + "/" + "e" * 40  # over 100 characters: ustar's prefix, GNU's long name or a pax path
    with tarfile.open(path, "w", format=fmt) as tar:
        add(tar, "s0.png", png(0))
        add(tar, "s0.cls", b"1")
        folder = tarfile.TarInfo("sub")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("s0.lnk")
        link.type, link.linkname = tarfile.SYMTYPE, "s0.png"
        tar.addfile(link)
        add(tar, f"{long_dir}/s1.png", png(1))
        add(tar, f"{long_dir}/s1.cls", b"")  # an empty member
        if fmt == tarfile.PAX_FORMAT:
            add(tar, "é" * 60 + ".png", png(2))  # a non-ASCII name: a pax record
    with tarfile.open(path) as tar:
        expected = [(m.name, tar.extractfile(m).read(), m.offset_data, m.size) for m in tar if m.isreg()]
    assert list(members(str(path))) == expected
    assert [(n, d) for n, d, _, _ in members(str(path), lambda name: 0)] == [(n, None) for n, *_ in expected]
    assert split_name(f"{long_dir}/s1.cls") == (f"{long_dir}/s1", "cls") and split_name("x/.hidden") == (None, None)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda data: data[:2000], "unexpected end of data"),  # inside the first image
        (lambda data: data[:700], "unexpected end of data"),  # inside its pax record
        (lambda data: b"not a tar file at all" * 40, "not a tar"),
        (lambda data: b"", "empty file"),
    ],
)
def test_a_cut_off_or_foreign_shard_is_one_line(tmp_path, make, expected):
    good = tmp_path / "good.tar"
    with wds.TarWriter(str(good)) as sink:
        for i in range(3):
            sink.write({"__key__": f"s{i}", "png": png(i) * 20, "cls": "0"})
    bad = tmp_path / "bad.tar"
    bad.write_bytes(make(good.read_bytes()))
    with pytest.raises(DataError, match=f"^cannot read shard {bad}: .*({expected})") as err:
        list(members(str(bad)))
    assert "\n" not in str(err.value)


def write(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


def sample(i: int, image: bytes | None = None) -> dict:
    return {"__key__": f"k{i:03d}", "png": image if image is not None else png(i), "cls": str(i % 3)}


def shards(folder: Path, *, bad: int | None = None, count: int = 3, per: int = 20) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(count):
        write(
            folder / f"train-{s:06d}.tar",
            [sample(i, b"garbage" if i == bad else None) for i in range(s * per, (s + 1) * per)],
        )
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    return f"dataset.train='{folder}/train-{{000000..{count - 1:06d}}}.tar'"


def load(tmp_path, monkeypatch, *overrides: str):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stats = () if any("dataset.mean" in o for o in overrides) else ("dataset.mean=[0.5]", "dataset.std=[0.25]")
    cfg = compose_config("dataset=webdataset", *stats, *overrides)
    return load_data(cfg.dataset, seed=0)


def epoch(images: StreamedImages, labels: torch.Tensor, seed: int = 1) -> list[torch.Tensor]:
    got = iterate_batches(TensorSplit(images, labels), 8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return [t for batch in got for t in batch]


def test_the_index_spans_give_the_chunks_the_tar_walk_gives(tmp_path, monkeypatch):
    data = load(tmp_path, monkeypatch, shards(tmp_path / "s"), "dataset.num_workers=0", "dataset.shuffle_buffer=7")
    train = data.train.images
    assert all(part.spans is not None for part in train.parts)
    walked = StreamedImages(
        [part.__class__(**{**part.__dict__, "spans": None}) for part in train.parts], train.settings
    )
    by_span, by_walk = epoch(train, data.train.labels), epoch(walked, data.train.labels)
    assert len(by_span) == len(by_walk) > 0 and all(torch.equal(a, b) for a, b in zip(by_span, by_walk))
    indexed = [t for chunk in train.indexed_batches(5) for t in chunk]
    walked_indexed = [t for chunk in walked.indexed_batches(5) for t in chunk]
    assert all(torch.equal(a, b) for a, b in zip(indexed, walked_indexed))


def test_an_irregular_shard_is_walked_not_read_by_span(tmp_path):
    path = tmp_path / "odd.tar"
    write(path, [sample(0), sample(1)])
    with tarfile.open(path, "a") as tar:  # k000 again after k001: webdataset groups it as a sample of its own
        add(tar, "k000.txt", b"x")
    index = read_index(str(path), ("png",), "cls")
    assert index.keys == ("k000", "k001") and index.spans is None
    regular = tmp_path / "regular.tar"
    write(regular, [sample(0), sample(1)])
    spans = read_index(str(regular), ("jpg", "png"), "cls").spans
    with tarfile.open(regular) as tar:
        offsets = [(m.offset_data, m.size, 1) for m in tar if m.name.endswith(".png")]
    assert spans == tuple(offsets)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_image_in_a_training_shard_is_skipped_with_a_notice(tmp_path, monkeypatch, capsys, workers):
    held_out = (KeyRule("test", share=0.2), KeyRule("val:0", share=0.1))  # the defaults, seed 0
    bad = next(i for i in range(60) if not any(rule(f"k{i:03d}") for rule in held_out))
    spec = shards(tmp_path / "s", bad=bad)
    data = load(tmp_path, monkeypatch, spec, f"dataset.num_workers={workers}", "dataset.skip_bad_images=true")
    train = data.train
    assert f"k{bad:03d}" in {key for part in train.images.parts for key in part.keys}
    batches = list(iterate_batches(train, 8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert sum(len(y) for _, y in batches) == len(train.labels)  # a rank short of one reads on into its next pass
    err = capsys.readouterr().err
    assert err.count(f"k{bad:03d}.png does not decode and is left out (dataset.skip_bad_images=true)") == 1
    with pytest.raises(
        DataError, match=f"k{bad:03d}.png.*skip_bad_images leaves bad images out of training passes only"
    ):
        list(train.images.indexed_batches(8))  # an evaluation pass needs every sample it counted


def test_a_bad_image_in_a_shard_stops_the_run_without_skip(tmp_path, monkeypatch):
    data = load(tmp_path, monkeypatch, shards(tmp_path / "s", bad=5), "dataset.num_workers=0")
    with pytest.raises(DataError, match=r"^cannot read image .*k005\.png: ") as err:
        whole = data.train.images.concat(data.val.images).concat(data.test.images)
        list(iterate_batches(TensorSplit(whole, whole.labels), 8, shuffle=False))
    assert "skip_bad_images leaves" not in str(err.value)


def test_decode_device_is_checked_and_said_in_the_data_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^dataset.decode_device=gpu: expected one of cpu, cuda$"):
        validate(compose_train(["dataset=webdataset", "dataset.decode_device=gpu"]))
    spec = shards(tmp_path / "s")
    data = load(tmp_path, monkeypatch, spec, "dataset.num_workers=0")
    assert data.layout.endswith("; JPEGs decoded in the DataLoader workers (dataset.decode_device=cpu)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine without its GPU, if it has one
    with pytest.raises(DataError, match=r"^dataset.decode_device=cuda: no CUDA device is available here; use "):
        load(tmp_path, monkeypatch, spec, "dataset.decode_device=cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_jpegs_decoded_on_the_gpu_are_the_cpu_pixels(tmp_path, monkeypatch):
    """On a GPU, nvjpeg may round differently from libjpeg-turbo: the batches must match in labels and order,
    and the pixels within a small tolerance (the pinned CPU path is bit-exact)."""
    from PIL import Image

    folder = tmp_path / "j"
    folder.mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(40):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), "RGB").save(out, format="JPEG")
        samples.append({"__key__": f"k{i:03d}", "jpg": out.getvalue(), "cls": str(i % 3)})
    write(folder / "train-000000.tar", samples)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    spec = f"dataset.train='{folder}/train-000000.tar'"
    common = (spec, "dataset.num_workers=1", "dataset.mean=[0.5,0.5,0.5]", "dataset.std=[0.25,0.25,0.25]")
    cpu = load(tmp_path, monkeypatch, *common)
    gpu = load(tmp_path, monkeypatch, *common, "dataset.decode_device=cuda")
    assert "decoded on the GPU" in gpu.layout
    for (a, y), (b, z) in zip(
        iterate_batches(cpu.train, 8, shuffle=False), iterate_batches(gpu.train, 8, shuffle=False)
    ):
        assert torch.equal(y.cpu(), z.cpu())
        assert (a.int() - b.cpu().int()).abs().max() <= 2
