"""Files from someone else: a run directory, a dataset folder, an image. A table of malicious inputs (each harmless)
against the commands that read them: nothing outside the run directory or the caches changes, no read hangs, no
decoder or model check allocates gigabytes, and no cache shipped with the data stands for the images.

"Nothing outside changed" is checked against a snapshot (names, bytes, link targets) of an `outside` folder the
planted links point to."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.data import image_cache
from cnntrain.data.image_cache import fallback_cache_dir
from cnntrain.data.image_files import ImageReader
from cnntrain.errors import DataError, ModelConfigError, UnsafePathError
from cnntrain.files import atomic_write, open_append, refuse_links_out, safe_folder, write_text

from helpers import (
    TINY_RUN,
    assert_one_line_error,
    cli_env,
    cnntrain_command,
    compose_config,
    run_main,
    run_stopped_in_epoch,
)
from synthetic_images import CLASSES, make_folder


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """The runs here are what hostile files meet, whatever the data: they train on the small set."""
    return small_data_root


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under `folder` (not following links): a file's bytes' hash, a link's target, a folder."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "folder"
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder a planted link points to, holding a file and a checkpoint-like temp file to notice changes by."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("keep me\n")
    (folder / ".last.pt.abc.tmp").write_text("not ours\n")
    return folder


# -- the writer itself ------------------------------------------------------------------------------------------


def test_a_folder_that_links_out_of_the_root_is_refused(tmp_path, outside):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match=r"checkpoints is a symbolic link to .*outside, outside .*run"):
        write_text(run / "checkpoints" / "last.pt", "x", root=run)
    assert snapshot(outside) == before


def test_a_link_inside_the_root_is_followed_and_missing_folders_are_made(tmp_path):
    run = tmp_path / "run"
    (run / "real").mkdir(parents=True)
    (run / "alias").symlink_to(run / "real")
    write_text(run / "alias" / "a.txt", "a", root=run)
    write_text(run / "new" / "deeper" / "b.txt", "b", root=run)
    assert (run / "real" / "a.txt").read_text() == "a" and (run / "new" / "deeper" / "b.txt").read_text() == "b"
    with pytest.raises(UnsafePathError, match="outside"):
        write_text(tmp_path / "elsewhere.txt", "c", root=run)
    with pytest.raises(UnsafePathError, match="climbs out"):
        safe_folder(run / ".." / "x", run)


def test_an_atomic_write_replaces_a_linked_file_and_never_writes_through_it(tmp_path, outside):
    (tmp_path / "summary.json").symlink_to(outside / "victim.txt")
    before = snapshot(outside)
    atomic_write(tmp_path / "summary.json", lambda tmp: tmp.write_text("{}"))
    assert not (tmp_path / "summary.json").is_symlink() and (tmp_path / "summary.json").read_text() == "{}"
    assert snapshot(outside) == before


def test_an_append_refuses_a_link_and_a_fifo(tmp_path, outside):
    (tmp_path / "train.log").symlink_to(outside / "victim.txt")
    with pytest.raises(UnsafePathError, match="train.log is a symbolic link"):
        open_append(tmp_path / "train.log")
    os.mkfifo(tmp_path / "metrics.csv")
    started = time.monotonic()
    with pytest.raises(UnsafePathError, match="metrics.csv"):
        open_append(tmp_path / "metrics.csv")
    assert time.monotonic() - started < 5
    with open_append(tmp_path / "fine.log") as log:
        log.write("ok\n")
    assert (tmp_path / "fine.log").read_text() == "ok\n" and (outside / "victim.txt").read_text() == "keep me\n"


def test_refuse_links_out_finds_a_link_one_folder_down(tmp_path, outside):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "inner").symlink_to(run)
    refuse_links_out(run)
    (run / "checkpoints" / "best.pt").symlink_to(outside / "victim.txt")
    with pytest.raises(UnsafePathError, match="best.pt is a symbolic link"):
        refuse_links_out(run)


# -- run directories: resume and export --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, synthetic_data_root) -> Path:
    """A run stopped in its second epoch (checkpoints/last.pt after epoch 1): what `resume=` continues."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    cfg = compose_config(*TINY_RUN, "trainer.progress=false", "trainer.batch_size=256", data_root=synthetic_data_root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_stopped_in_epoch(cfg, folder, 2, monkeypatch)
    return folder


def plant(run: Path, outside: Path, what: str) -> None:
    """Replace `what` in the run directory with a link into `outside` (a copy of it there, for a folder)."""
    target = run / what
    if target.is_dir():
        shutil.copytree(target, outside / what)
        shutil.rmtree(target)
    elif target.exists():
        shutil.copy(target, outside / what)
        target.unlink()
    else:
        (outside / what).mkdir()
    target.symlink_to(outside / what)


@pytest.mark.parametrize("what", ["train.log", "checkpoints", "metrics.csv", "summary.json", ".hydra", "export"])
def test_resume_writes_nothing_through_a_planted_link(stopped_run, tmp_path, outside, monkeypatch, what):
    from cnntrain.commands.train import main

    run = tmp_path / "run"
    shutil.copytree(stopped_run, run, symlinks=True)
    plant(run, outside, what)
    before = snapshot(outside)
    result = run_main(main, [f"resume={run}"], tmp_path, monkeypatch)
    assert_one_line_error(result, f"{run / what} is a symbolic link", "outside")
    assert snapshot(outside) == before


@pytest.mark.slow
def test_a_new_run_into_a_folder_with_a_linked_checkpoints_folder_stops_at_the_write(
    tmp_path, outside, monkeypatch, synthetic_data_root
):
    """No resume, so no check up front: the checkpoint writer itself refuses the folder that leads out."""
    from cnntrain.commands.train import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(outside)
    before = snapshot(outside)
    result = run_main(
        main,
        [*TINY_RUN, "trainer.epochs=1", "trainer.batch_size=256", "trainer.progress=false", f"hydra.run.dir='{run}'"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, f"{run / 'checkpoints'} is a symbolic link to {outside}, outside {run}")
    assert snapshot(outside) == before


def plant_export_link(run: Path, outside: Path, what: str) -> None:
    """A link where an export goes: the export/ folder itself, or the file export/model.pt."""
    if what == "export":
        (run / "export").symlink_to(outside)
    else:
        (run / "export").mkdir()
        (run / "export" / "model.pt").symlink_to(outside / "victim.txt")


@pytest.mark.parametrize("what", ["export", "export/model.pt"])
def test_export_writes_nothing_through_a_planted_link(stopped_run, tmp_path, outside, monkeypatch, what):
    from cnntrain.commands.export import main

    run = tmp_path / "run"
    shutil.copytree(stopped_run, run, symlinks=True)
    plant_export_link(run, outside, what)
    before = snapshot(outside)
    result = run_main(main, [str(run), "--format", "torchscript", "--checkpoint", "last"], tmp_path, monkeypatch)
    if what == "export":
        assert_one_line_error(result, "export is a symbolic link", "outside")
    else:  # an output file that is a link is refused before any work: nothing is written through it
        assert_one_line_error(result, "model.pt is a symbolic link", "does not write through links")
        assert (run / "export" / "model.pt").is_symlink()
    assert snapshot(outside) == before


# -- .gz IDX files -------------------------------------------------------------------------------------------------


def idx_header(*sizes: int) -> bytes:
    return bytes((0, 0, 0x08, len(sizes))) + struct.pack(f">{len(sizes)}I", *sizes)


def mnist_cfg(root: Path):
    return compose_config("dataset=mnist", f"dataset.root={root}", "dataset.download=false").dataset


def test_a_gz_bomb_is_stopped_at_the_size_its_header_announces(tmp_path):
    """A quarter of a MB of .gz, 256 MB of zeros behind a header that announces 10 images: unpacking stops at
    the header's 7,856 bytes."""
    from cnntrain.data.sources.torchvision_datasets import ensure_available

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)  # a gzip stream, written piece by piece
    with open(raw / "train-images-idx3-ubyte.gz", "wb") as out:
        out.write(zeros.compress(idx_header(10, 28, 28)))
        block = bytes(1 << 20)
        for _ in range(256):
            out.write(zeros.compress(block))
        out.write(zeros.flush())
    assert (raw / "train-images-idx3-ubyte.gz").stat().st_size < 400_000
    started = time.monotonic()
    with pytest.raises(DataError, match="unpacks to more than the 7,856 bytes its IDX header announces"):
        ensure_available(mnist_cfg(tmp_path))
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_a_gz_whose_header_announces_too_much_is_refused_before_unpacking(tmp_path):
    from cnntrain.data.sources.torchvision_datasets import ensure_available

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_header(100_000_000, 28, 28)))
    with pytest.raises(DataError, match=r"announces 78,400,000,016 bytes, more than the 1,073,741,824 allowed"):
        ensure_available(mnist_cfg(tmp_path))
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_a_planted_part_file_is_never_written_through(make_data_root, tmp_path, outside):
    """Unpacking goes through a fresh temp file: a `.part` link beside the archive is left alone."""
    from cnntrain.data.sources.torchvision_datasets import ensure_available

    root = make_data_root(n_train=20, n_test=10)
    raw = root / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        (raw / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        (raw / f"{path.name}.part").symlink_to(outside / "victim.txt")
    before = snapshot(outside)
    ensure_available(mnist_cfg(root))
    assert snapshot(outside) == before
    assert all(
        (raw / name).is_file() and not (raw / name).is_symlink()
        for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )


# -- images: FIFOs, pixel bombs, the model check --------------------------------------------------------------------


def png_header(width: int, height: int, *, whole: bool = False) -> bytes:
    """A PNG whose header announces width x height (8-bit grayscale): its data cut off, or (whole) all black, a
    real image that decodes, compressed to a few hundred kB and made without holding its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compressobj(9)
    data = b"".join(pixels.compress(bytes(width + 1)) for _ in range(height)) + pixels.flush() if whole else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def run_measured(
    args: list[str], cwd: Path, data_root: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a console script in a child of a small wrapper, returning its result, seconds and peak memory (MB)."""
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stdout); sys.exit(r.returncode)"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *args],
        cwd=cwd,
        env=cli_env(data_root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    peak_mb = int(result.stdout.strip().splitlines()[-1]) / 1024
    return result, seconds, peak_mb


@pytest.mark.slow
def test_a_fifo_given_to_predict_is_refused_without_hanging(stopped_run, tmp_path, synthetic_data_root):
    os.mkfifo(tmp_path / "pipe.png")
    command = [
        *cnntrain_command("cnntrain-predict", "cnntrain.commands.predict"),
        str(stopped_run),
        str(tmp_path / "pipe.png"),
        "--checkpoint",
        "last",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=cli_env(synthetic_data_root), capture_output=True, text=True, timeout=60
    )
    assert_one_line_error(result, "pipe.png", "named pipe (FIFO), not a regular file")


def test_a_fifo_in_an_image_folder_or_as_a_label_file_is_refused(tmp_path):
    from cnntrain.data.images import decode_image
    from cnntrain.data.loading import load_data

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(DataError, match="pipe.png is a named pipe"):
        decode_image(tmp_path / "pipe.png", 1, 8, 8)
    os.mkfifo(tmp_path / "labels.csv")
    cfg = compose_config("dataset=labels", f"dataset.file={tmp_path / 'labels.csv'}").dataset
    with pytest.raises(UnsafePathError, match="labels.csv is a named pipe"):
        load_data(cfg, seed=0)


def test_an_image_over_the_pixel_limit_is_one_error_before_decoding(tmp_path):
    from cnntrain.data.images import decode_image, image_input_shape

    (tmp_path / "big.png").write_bytes(png_header(9000, 9000))
    (tmp_path / "huge.png").write_bytes(png_header(30000, 30000))  # past Pillow's own bomb error
    cfg = compose_config("dataset=imagefolder", f"dataset.root={tmp_path}").dataset
    for name in ("big.png", "huge.png"):
        with pytest.raises(DataError, match=rf"{name} is [\dx =,]+ pixels, more than the 67,108,864"):
            image_input_shape(cfg, tmp_path / name)
        with pytest.raises(DataError, match="more than the 67,108,864"):
            decode_image(tmp_path / name, 1, 8, 8)


@pytest.mark.slow
def test_a_9000x9000_first_image_fails_fast_in_little_memory(tmp_path, synthetic_data_root):
    root = make_folder(tmp_path / "photos", rgb=False, size=16, per_class=4)
    first = sorted((root / "train" / "circle").iterdir())[0]
    first.write_bytes(png_header(9000, 9000, whole=True))
    result, seconds, peak_mb = run_measured(
        [*cnntrain_command(), "dataset=imagefolder", f"dataset.root={root}", "model=lenet", "trainer.epochs=1"],
        tmp_path,
        synthetic_data_root,
    )
    assert result.returncode == 2, result.stderr
    assert "9000x9000" in result.stderr and "Traceback" not in result.stderr
    assert peak_mb < 1500, f"{peak_mb:.0f} MB"


@pytest.mark.slow
def test_a_huge_input_shape_fails_the_model_check_in_little_memory(tmp_path, synthetic_data_root):
    root = make_folder(tmp_path / "photos", rgb=False, size=16, per_class=4)
    result, seconds, peak_mb = run_measured(
        [
            *cnntrain_command(),
            "dataset=imagefolder",
            f"dataset.root={root}",
            "dataset.image_size=[8000,8000]",
            "model=lenet",
            "trainer.epochs=1",
        ],
        tmp_path,
        synthetic_data_root,
    )
    assert_one_line_error(result, "model 'lenet'", "values per image, more than the 268,435,456")
    assert peak_mb < 1500, f"{peak_mb:.0f} MB"


def test_a_checkpoint_whose_saved_shape_is_huge_fails_before_allocating(stopped_run, tmp_path, monkeypatch):
    """predict rebuilds the model for the checkpoint's saved input shape: 9000x9000 there is one line, at once."""
    from cnntrain.commands.predict import main

    payload = torch.load(stopped_run / "checkpoints" / "last.pt", weights_only=True)
    payload["data"] = {**payload["data"], "input_shape": [1, 9000, 9000]}
    torch.save(payload, tmp_path / "huge.pt")
    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    started = time.monotonic()
    result = run_main(
        main,
        [str(stopped_run), str(tmp_path / "digit.png"), "--checkpoint", str(tmp_path / "huge.pt")],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(
        result, "huge.pt", "layer 1 (conv_block) holds 32x4500x4500", "values per image, more than the 268,435,456"
    )
    assert time.monotonic() - started < 20


def test_the_model_check_counts_parameters_on_the_meta_device():
    from cnntrain.models.builder import build_model

    layers = ["flatten", {"linear": 500}, "relu", {"linear": 10}]
    started = time.monotonic()
    with pytest.raises(ModelConfigError, match=r"parameters by layer 2 \(linear\), more than the 1,000,000,000"):
        build_model(layers, [3, 1000, 1000])
    assert time.monotonic() - started < 10
    model, rows = build_model(layers, [1, 28, 28])
    assert rows[-1].output_shape == (10,) and next(model.parameters()).device.type == "cpu"


def test_the_meta_check_leaves_the_seeded_weights_as_they_were():
    from cnntrain.models import builder

    layers = [{"conv2d": {"out_channels": 4, "kernel_size": 3}}, "flatten", {"linear": 10}]
    torch.manual_seed(0)
    checked = builder.build_model(layers, [1, 12, 12])[0]
    torch.manual_seed(0)
    unchecked = [
        builder._build_one(item, i, shape, "m")[0]
        for i, (item, shape) in enumerate(zip(layers, [(1, 12, 12), (4, 10, 10), (400,)]), start=1)
    ]
    for a, b in zip(checked, unchecked):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# -- caches ----------------------------------------------------------------------------------------------------------


def listing(root: Path) -> list[tuple[Path, int]]:
    return [(path, label) for label, name in enumerate(CLASSES) for path in sorted((root / "train" / name).iterdir())]


def old_cache_name(files, shape, root: Path, split: str) -> str:
    """The name cnntrain 0.x gave a cache in <data>/.cnntrain-cache (keyed by name, size, mtime): what a poisoned
    archive would ship."""
    listing = [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns, label] for p, label in files]
    text = json.dumps({"version": 2, "shape": list(shape), "resize": "stretch", "files": listing})
    return f"{split}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"


def test_a_cache_shipped_in_the_dataset_never_replaces_its_images(tmp_path):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    files = listing(root)
    shape = (1, 12, 12)
    poison = {
        "images": torch.full((len(files), *shape), 255, dtype=torch.uint8),
        "bad": [],
        "errors": [],
        "labels": [label for _, label in files],
    }
    shipped = root / ".cnntrain-cache"
    shipped.mkdir()
    torch.save(poison, shipped / old_cache_name(files, shape, root, "train"))
    images, _ = ImageReader().load(files, shape, root, "train")
    decoded = image_cache.decode_files([p for p, _ in files], shape)[0]
    assert torch.equal(images, decoded) and not torch.equal(images, poison["images"])


def test_a_cache_that_does_not_match_its_labels_is_rebuilt_with_a_notice(tmp_path, capfd):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    files = listing(root)
    first, _ = ImageReader().load(files, (1, 12, 12), root, "train")
    (cache,) = fallback_cache_dir(root).glob("train-*.pt")
    payload = torch.load(cache, weights_only=True)
    torch.save({**payload, "images": payload["images"][:-1]}, cache)
    again, _ = ImageReader().load(files, (1, 12, 12), root, "train")
    assert torch.equal(again, first)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"notice: the image cache {cache} holds 11 images, not the 12 files")
    assert torch.load(cache, weights_only=True)["images"].shape[0] == 12, "rebuilt"


def test_files_changed_behind_the_same_names_sizes_and_times_are_decoded_again(tmp_path):
    """What an archive extracted over another keeps: names, sizes and modification times. The key is the bytes."""
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    files = listing(root)
    first, _ = ImageReader().load(files, (1, 12, 12), root, "train")
    victim = next(p for p, _ in files if p.suffix == ".png")
    stat = victim.stat()
    Image.fromarray(np.full((12, 12), 7, dtype=np.uint8), "L").save(tmp_path / "swap.png")
    data = (tmp_path / "swap.png").read_bytes()
    assert len(data) <= stat.st_size
    victim.write_bytes(data + b"\0" * (stat.st_size - len(data)))  # bytes after IEND are ignored
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert victim.stat().st_size == stat.st_size and victim.stat().st_mtime_ns == stat.st_mtime_ns
    again, _ = ImageReader().load(files, (1, 12, 12), root, "train")
    index = [p for p, _ in files].index(victim)
    assert not torch.equal(again[index], first[index]) and int(again[index].float().mean()) == 7


def test_a_linked_cache_folder_in_the_data_or_the_cache_receives_nothing(tmp_path, outside, own_cache_folder):
    """A `.cnntrain-cache` link shipped in the data is never used; a link in the cache folder that leads out of it
    is refused (the images are decoded, uncached)."""
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    (root / ".cnntrain-cache").symlink_to(outside)
    fallback_cache_dir(root).parent.mkdir(parents=True)
    fallback_cache_dir(root).symlink_to(outside)
    before = snapshot(outside)
    images, _ = ImageReader().load(listing(root), (1, 12, 12), root, "train")
    assert images.shape == (12, 1, 12, 12) and snapshot(outside) == before
    assert fallback_cache_dir(root).parent == own_cache_folder
