"""Image files as they are: formats, EXIF orientation, 16-bit and transparent images, the resize modes, files that
do not decode, and the decoded cache (built by a process pool, kept elsewhere when the data folder is read-only)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.data import image_cache
from cnntrain.data.image_cache import decode_files, fallback_cache_dir
from cnntrain.data.image_files import ImageReader
from cnntrain.data.images import IMAGE_SUFFIXES, decode_image, image_input_shape
from cnntrain.data.loading import load_data
from cnntrain.data.sources.class_folders import _files
from cnntrain.errors import DataError

from helpers import compose_config, dataset_section, run_main
from synthetic_images import make_folder

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def blocks() -> Image.Image:
    """12x8 RGB: left half red, right half green, bottom row blue (exact in every lossless format)."""
    array = np.zeros((8, 12, 3), dtype=np.uint8)
    array[:, :6], array[:, 6:], array[7] = RED, GREEN, BLUE
    return Image.fromarray(array, "RGB")


def decoded(path_or_file, channels=3, height=8, width=12, **kw) -> np.ndarray:
    tensor = decode_image(path_or_file, channels, height, width, **kw)
    assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == (channels, height, width)
    return tensor.permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".webp", {"lossless": True}), (".bmp", {}), (".tif", {}), (".TIFF", {}), (".png", {}), (".gif", {})],
)
def test_lossless_formats_decode_exactly(tmp_path, suffix, options):
    path = tmp_path / f"blocks{suffix}"
    blocks().save(path, **options)
    assert np.array_equal(decoded(path), np.asarray(blocks()))


def test_a_binary_file_object_decodes_like_the_file(tmp_path):
    buffer = io.BytesIO()
    blocks().save(buffer, format="WEBP", lossless=True)
    buffer.seek(0)
    assert np.array_equal(decoded(buffer), np.asarray(blocks()))


def test_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "two.gif"
    frames = [Image.new("RGB", (12, 8), RED), Image.new("RGB", (12, 8), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as image:
        assert image.n_frames == 2
    assert (decoded(path) == RED).all()


def test_every_suffix_is_found_in_any_case(tmp_path):
    names = ["a.webp", "b.BMP", "c.tif", "d.Tiff", "e.GIF", "f.JPEG", "g.Png", "h.txt"]
    for name in names:
        (tmp_path / "cls" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "cls" / name).write_bytes(b"x")
    found = [path.name for path, _ in _files(tmp_path, ["cls"])]
    assert found == names[:-1] and set(IMAGE_SUFFIXES) >= {".webp", ".bmp", ".tif", ".tiff", ".gif"}


def test_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I"), image.mode
    assert decoded(path, channels=1, height=1, width=4)[..., 0].tolist() == [[0, 1, 128, 255]]
    assert (decoded(path, channels=3, height=1, width=4)[0, 2] == 128).all()
    assert image_input_shape(dataset_section({"channels": None, "image_size": None}), path) == (1, 1, 4)


def test_palette_png_transparency_is_black(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (4, 2), 0)
    image.putpalette([*RED, *GREEN] + [0] * 762)
    image.putpixel((3, 1), 1)
    image.save(path, transparency=0)  # index 0 (red) is transparent
    array = decoded(path, height=2, width=4)
    assert (array[0] == 0).all() and tuple(array[1, 3]) == GREEN


def test_alpha_is_composited_on_black(tmp_path):
    path = tmp_path / "rgba.png"
    pixels = np.array([[[200, 100, 50, 255], [255, 255, 255, 0], [200, 100, 50, 128]]], dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(path)
    array = decoded(path, height=1, width=3).astype(int)
    assert array[0, 0].tolist() == [200, 100, 50] and array[0, 1].tolist() == [0, 0, 0]
    assert np.abs(array[0, 2] - np.array([100, 50, 25])).max() <= 1
    la = tmp_path / "la.png"
    Image.fromarray(np.array([[[180, 255], [180, 0]]], dtype=np.uint8), "LA").save(la)
    assert decoded(la, channels=1, height=1, width=2)[..., 0].tolist() == [[180, 0]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    image.save(path, quality=95)
    with Image.open(path) as opened:
        assert opened.mode == "CMYK"
    red = decoded(path, height=16, width=16).astype(int)
    assert (red[..., 0] > 230).all() and (red[..., 1:] < 25).all()


def test_exif_orientation_is_applied_first(tmp_path):
    path = tmp_path / "phone.jpg"
    stored = np.zeros((16, 32), dtype=np.uint8)
    stored[:, :16] = 255  # stored left half bright; orientation 6: turned 90 degrees clockwise to show
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored, "L").save(path, exif=exif, quality=95)
    assert image_input_shape(dataset_section({"channels": None, "image_size": None}), path) == (1, 32, 16)
    upright = decoded(path, channels=1, height=32, width=16)[..., 0].astype(int)
    assert upright[:14].min() > 200 and upright[18:].max() < 50, "the stored left half is now the top"


def test_a_decompression_bomb_is_refused_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (30, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError) as err:
        decode_image(path, 1, 8, 8)
    assert "is 900 pixels, more than Pillow's limit (PIL.Image.MAX_IMAGE_PIXELS = 100)" in str(err.value)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------- resize modes
def ramp(width: int, height: int, along: str) -> Image.Image:
    """Grayscale whose value is 8 x the column (along='x') or the row (along='y')."""
    y, x = np.mgrid[:height, :width]
    return Image.fromarray((8 * (x if along == "x" else y)).astype(np.uint8), "L")


@pytest.mark.parametrize(("size", "along", "kept"), [((30, 10), "x", slice(10, 20)), ((10, 30), "y", slice(10, 20))])
def test_crop_cuts_the_centre_of_the_covering_resize(tmp_path, size, along, kept):
    path = tmp_path / "ramp.png"
    ramp(*size, along).save(path)
    out = decoded(path, channels=1, height=10, width=10, resize="crop")[..., 0]
    expected = 8 * np.arange(30)[kept]
    assert (out == (expected[None, :] if along == "x" else expected[:, None])).all()


def test_crop_resizes_the_shorter_side_to_the_target(tmp_path):
    path = tmp_path / "wide.png"
    array = np.zeros((20, 60), dtype=np.uint8)
    array[:, 20:40], array[:, 40:] = 200, 100
    Image.fromarray(array, "L").save(path)
    out = decoded(path, channels=1, height=10, width=10, resize="crop")[..., 0]
    reference = np.asarray(Image.fromarray(array, "L").resize((30, 10), Image.Resampling.BILINEAR))[:, 10:20]
    assert np.array_equal(out, reference), "60x20 -> 30x10 (the shorter side fits), then columns 10..19"
    assert (out[:, 2:8] == 200).all()


@pytest.mark.parametrize(
    ("size", "rows", "cols"), [((20, 10), slice(2, 7), slice(0, 10)), ((10, 20), slice(0, 10), slice(2, 7))]
)
def test_pad_letterboxes_on_black(tmp_path, size, rows, cols):
    path = tmp_path / "solid.png"
    Image.new("L", size, 200).save(path)
    out = decoded(path, channels=1, height=10, width=10, resize="pad")[..., 0]
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[rows, cols] = 200
    assert np.array_equal(out, expected)


def test_stretch_is_the_plain_bilinear_resize(tmp_path):
    path = tmp_path / "ramp.png"
    ramp(30, 10, "x").save(path)
    out = decoded(path, channels=1, height=10, width=10)[..., 0]
    assert np.array_equal(out, np.asarray(ramp(30, 10, "x").resize((10, 10), Image.Resampling.BILINEAR)))
    assert not np.array_equal(out, decoded(path, channels=1, height=10, width=10, resize="crop")[..., 0])


def test_the_cache_is_keyed_by_the_resize_mode(tmp_path):
    root = tmp_path / "data"
    files = [(root / "a.png", 0)]
    root.mkdir()
    ramp(30, 10, "x").save(files[0][0])
    stretch, crop = (
        ImageReader(resize=mode).load(files, (1, 10, 10), root, "train")[0] for mode in ("stretch", "crop")
    )
    assert not torch.equal(stretch, crop) and len(list(fallback_cache_dir(root).iterdir())) == 2


def test_predict_uses_the_runs_crop_and_export_records_it(tmp_path, monkeypatch):
    from cnntrain.commands import predict, train
    from cnntrain.inference import classifier, export
    from cnntrain.inference.load import load_run

    root = make_folder(tmp_path / "data", rgb=False, size=16, per_class=6)
    result = run_main(
        train.main,
        [
            "dataset=imagefolder",
            f"dataset.root={root}",
            "dataset.resize=crop",
            "model=cnn2",
            "trainer.epochs=1",
            "trainer.batch_size=8",
            "trainer.progress=false",
            "report.plots=false",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    run_dir = next(tmp_path.glob("outputs/**/summary.json")).parent
    saved = load_run(run_dir)
    assert saved.resize == "crop"
    assert export.metadata(saved, "torchscript", run_dir / "m.pt")["input"]["resize"]["mode"] == "crop"

    seen = []
    real = classifier.decode_image
    monkeypatch.setattr(classifier, "decode_image", lambda *a, **kw: seen.append(kw.get("resize")) or real(*a, **kw))
    wide = tmp_path / "wide.png"
    ramp(48, 16, "x").save(wide)
    result = run_main(predict.main, [str(run_dir), str(wide), "--json"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert seen == ["crop"] and json.loads(result.stdout)[0]["image"] == str(wide)

    saved.config.dataset.pop("resize")  # a run saved before dataset.resize existed
    assert saved.resize == "stretch"


# ---------------------------------------------------------------------------------------------- bad files
def spoil(root: Path) -> list[Path]:
    bad = [root / "train" / "circle" / "zz-garbage.png", root / "train" / "square" / "zz-empty.jpg"]
    bad[0].write_bytes(b"not an image at all")
    bad[1].write_bytes(b"")
    return bad


def test_all_bad_files_are_counted_in_one_line(tmp_path):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=5)
    bad = spoil(root)
    cfg = compose_config("dataset=imagefolder", f"dataset.root={root}", "dataset.num_workers=0").dataset
    with pytest.raises(DataError) as err:
        load_data(cfg, seed=0)
    message = str(err.value)
    assert str(bad[0]) in message and "and 1 more" in message and "dataset.skip_bad_images=true" in message
    assert "\n" not in message


@pytest.mark.parametrize("in_memory", [True, False])
def test_skipped_files_drop_their_labels(tmp_path, in_memory):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=5)
    bad = spoil(root)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.skip_bad_images=true",
        f"dataset.in_memory={str(in_memory).lower()}",
        "dataset.num_workers=0",
    ).dataset
    bundle = load_data(cfg, seed=0)
    assert sorted(path for path, _ in bundle.skipped) == sorted(bad)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 15
    labels = torch.cat([bundle.train.labels, bundle.val.labels, bundle.test.labels])
    assert torch.bincount(labels).tolist() == [5, 5, 5]


def test_skip_bad_images_end_to_end(tmp_path):
    from cnntrain.training.run import run

    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=8)
    bad = spoil(root)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.skip_bad_images=true",
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=8",
        "trainer.progress=false",
        "report.plots=false",
    )
    run(cfg, tmp_path / "run")
    listed = (tmp_path / "run" / "bad_images.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(map(str, bad))
    assert all("cannot read image" in line.split("\t")[1] for line in listed)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(summary["sizes"].values()) == 24 and summary["data"]["skipped_images"] == 2
    assert "2 image file(s) do not decode" in (tmp_path / "run" / "train.log").read_text()


# ---------------------------------------------------------------------------------------------- the cache
def test_parallel_decoding_is_bit_identical_to_serial(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", rgb=True, size=20, per_class=9)
    paths = sorted(root.rglob("*.*"))
    paths.insert(5, spoil(root)[0])
    monkeypatch.setattr(image_cache, "CHUNK", 4)  # 28 files: 7 tasks over 2 processes
    pools = []
    real_pool = image_cache.ProcessPoolExecutor
    monkeypatch.setattr(image_cache, "ProcessPoolExecutor", lambda n, **kw: pools.append(n) or real_pool(n, **kw))
    serial = decode_files(paths, (3, 16, 16), resize="pad", num_workers=0)
    assert pools == []
    parallel = decode_files(paths, (3, 16, 16), resize="pad", num_workers=2)
    assert pools == [2], "the parallel decode ran in a pool of 2 processes"
    assert serial[0].shape == (27, 3, 16, 16) and serial[0].float().std() > 0
    assert torch.equal(serial[0], parallel[0]) and serial[1] == parallel[1] and [i for i, _ in serial[1]] == [5]


def test_the_cache_goes_to_cache_dir_never_into_the_data_folder(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    cache = tmp_path / "cache"
    cfg = compose_config(
        "dataset=imagefolder", f"dataset.root={root}", f"dataset.cache_dir={cache}", "dataset.num_workers=0"
    ).dataset
    first = load_data(cfg, seed=0)
    assert not list(root.rglob("*.pt")) and not (root / ".cnntrain-cache").exists()
    assert len(list(fallback_cache_dir(root, str(cache)).glob("train-*.pt"))) == 1

    monkeypatch.setattr(image_cache, "plan_batch", lambda *a, **kw: pytest.fail("decoded despite the cache"))
    second = load_data(cfg, seed=0)
    assert torch.equal(first.train.images[:], second.train.images[:])


def test_the_default_cache_dir_is_per_user_and_per_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a, b = fallback_cache_dir(tmp_path / "a"), fallback_cache_dir(tmp_path / "b")
    assert a.parent == b.parent == tmp_path / "xdg" / "cnntrain" and a != b
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fallback_cache_dir(tmp_path / "a").parent == Path.home() / ".cache" / "cnntrain"
