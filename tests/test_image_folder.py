"""Image-folder datasets and torchvision datasets by name: shapes and classes come from the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnntrain.data import image_cache
from cnntrain.data.loading import describe_data, load_data
from cnntrain.data.sources.torchvision_datasets import as_nchw
from cnntrain.errors import DataError
from cnntrain.training.run import run

from helpers import dataset_section
from synthetic_images import CLASSES, make_folder


def folder_cfg(root: Path, **overrides):

    cfg = {
        "name": "imagefolder",
        "kind": "imagefolder",
        "root": str(root),
        "image_size": None,
        "channels": None,
        "input_shape": None,
        "num_classes": None,
        "classes": None,
        "mean": None,
        "std": None,
        "test_split": 0.2,
        "val_split": 0.1,
        "val_strategy": "stratified",
        "download": False,
    }
    cfg.update(overrides)
    return dataset_section(cfg)


def test_grayscale_folder_shape_classes_and_test_split(tmp_path):
    root = make_folder(tmp_path / "gray", rgb=False, size=20)
    bundle = load_data(folder_cfg(root), seed=0)
    assert bundle.classes == list(CLASSES) and bundle.input_shape == (1, 20, 20)
    assert len(bundle.test) == 18 and len(bundle.train) + len(bundle.val) == 72
    assert torch.bincount(bundle.test.labels).tolist() == [6, 6, 6], "the held-out test set is stratified"
    assert bundle.train.images.dtype == torch.uint8
    assert 0.0 < float(bundle.mean) < 1.0 and float(bundle.std) > 0, "statistics computed from the data"


def test_rgb_folder_with_test_dir_resized(tmp_path):
    root = make_folder(tmp_path / "rgb", rgb=True, size=40, per_class=10, test_per_class=4)
    bundle = load_data(folder_cfg(root, image_size=[32, 32]), seed=0)
    assert bundle.input_shape == (3, 32, 32) and bundle.mean.shape == (1, 3, 1, 1)
    assert len(bundle.test) == 12 and bundle.test.images.shape == (12, 3, 32, 32)
    facts = describe_data(folder_cfg(root, image_size=[32, 32], channels=1))
    assert facts.input_shape == (1, 32, 32) and facts.classes == list(CLASSES)


def test_second_load_reads_the_cache_instead_of_decoding(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "cached", rgb=False, size=16, per_class=8)
    first = load_data(folder_cfg(root), seed=0)
    assert list(image_cache.fallback_cache_dir(root).glob("train-*.pt"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_cache, "plan_batch", no_decoding)  # decoding starts there
    second = load_data(folder_cfg(root), seed=0)
    assert torch.equal(first.train.images[:], second.train.images[:])
    assert torch.equal(first.test.labels, second.test.labels)
    (root / "train" / "cross" / "new.png").write_bytes((root / "train" / "cross" / "1.png").read_bytes())
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(folder_cfg(root), seed=0)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("nothing", "image folder .*nothing not found; expected .*<class>/<images>"),
        ("one-class", "1 class folder"),
        ("empty-class", "empty_class .*hold no"),
        ("bad-image", "cannot read image"),
    ],
)
def test_folder_mistakes_are_named(tmp_path, layout, message):
    root = tmp_path / layout
    if layout != "nothing":
        make_folder(root, rgb=False, size=12, per_class=3)
    if layout == "one-class":
        for name in CLASSES[1:]:
            for f in (root / "train" / name).iterdir():
                f.unlink()
            (root / "train" / name).rmdir()
    if layout == "empty-class":
        (root / "train" / "empty_class").mkdir()
    if layout == "bad-image":
        (root / "train" / "cross" / "broken.png").write_text("no pixels here")
    with pytest.raises(DataError, match=message):
        load_data(folder_cfg(root), seed=0)


def test_as_nchw_converts_cifar_style_arrays():
    hwc = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    nchw = as_nchw(hwc)
    assert nchw.shape == (2, 3, 4, 5) and nchw.dtype == torch.uint8
    assert int(nchw[1, 2, 3, 4]) == int(hwc[1, 3, 4, 2])
    assert as_nchw(torch.zeros(3, 28, 28, dtype=torch.uint8)).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("rgb, size", [(False, 28), (True, 32)])
def test_cnn3_trains_on_a_folder_with_shapes_inferred(tmp_path, rgb, size):
    from helpers import compose_config

    root = make_folder(tmp_path / "data", rgb=rgb, size=size, per_class=20)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "model=cnn3",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "report.plots=false",
    )
    run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["classes"] == list(CLASSES) and len(summary["confusion_matrix"]) == 3
    from cnntrain.training.checkpoints import load_checkpoint

    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert saved["data"]["input_shape"] == [3 if rgb else 1, size, size]
    assert saved["config"]["dataset"]["num_classes"] == 3
    first_conv, last_linear = saved["model"]["0.0.weight"], saved["model"]["7.weight"]
    assert first_conv.shape[1] == (3 if rgb else 1) and last_linear.shape[0] == 3


@pytest.mark.slow
def test_cli_trains_cnn3_on_an_rgb_folder(run_cli, tmp_path):
    root = make_folder(tmp_path / "pictures", rgb=True, size=32, per_class=15)
    result = run_cli(
        "dataset=imagefolder", f"dataset.root={root}", "model=cnn3", "trainer.epochs=1", "trainer.batch_size=16"
    )
    assert result.returncode == 0, result.stderr
    assert "3x32x32" in result.stdout and "circle" in result.stdout
    missing = run_cli("dataset=imagefolder", f"dataset.root={tmp_path / 'nowhere'}", "model=cnn3")
    assert missing.returncode == 2 and missing.stderr.startswith("error: image folder")
    assert not (tmp_path / "outputs").exists() or len(list((tmp_path / "outputs").rglob("summary.json"))) == 1


def emnist_cfg(root: Path, **overrides):

    cfg = {
        "name": "emnist",
        "kind": "torchvision",
        "torchvision_class": "EMNIST",
        "split": "digits",
        "root": str(root),
        "download": False,
        "input_shape": None,
        "num_classes": None,
        "classes": None,
        "mean": None,
        "std": None,
        "val_split": 0.1,
        "val_strategy": "random",
    }
    cfg.update(overrides)
    return dataset_section(cfg)


def test_emnist_by_name_with_split_takes_classes_from_torchvision(tmp_path):
    from synthetic_idx import write_idx_images, write_idx_labels

    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("train", 100), ("test", 30)):
        write_idx_images(raw / f"emnist-digits-{part}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        write_idx_labels(raw / f"emnist-digits-{part}-labels-idx1-ubyte", np.arange(n) % 10)
    bundle = load_data(emnist_cfg(tmp_path), seed=0)
    assert bundle.classes == [str(d) for d in range(10)] and bundle.input_shape == (1, 28, 28)
    assert len(bundle.test) == 30 and len(bundle.train) == 90
    assert describe_data(emnist_cfg(tmp_path)).classes == bundle.classes


def test_torchvision_dataset_mistakes(tmp_path):
    from cnntrain.data.sources.torchvision_datasets import ensure_available
    from cnntrain.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.split=None: EMNIST needs one of byclass"):
        ensure_available(emnist_cfg(tmp_path, split=None))
    with pytest.raises(DataError, match="CIFAR10 not found under .* and dataset.download=false"):
        ensure_available(emnist_cfg(tmp_path, torchvision_class="CIFAR10", split=None))


@pytest.mark.parametrize("workers", [0, 1])
def test_streamed_folder_gives_the_same_batches_as_in_memory(tmp_path, workers):
    from cnntrain.data.containers import iterate_batches
    from cnntrain.data.lazy_images import LazyImages

    root = make_folder(tmp_path / "big", rgb=True, size=16, per_class=10)
    memory = load_data(folder_cfg(root), seed=0)
    streamed = load_data(folder_cfg(root, in_memory=False, num_workers=workers), seed=0)
    assert isinstance(streamed.train.images, LazyImages)
    assert torch.allclose(streamed.mean, memory.mean) and torch.allclose(streamed.std, memory.std)
    for split in ("train", "val", "test"):
        a = list(iterate_batches(getattr(memory, split), 7, shuffle=True, generator=torch.Generator().manual_seed(3)))
        b = list(iterate_batches(getattr(streamed, split), 7, shuffle=True, generator=torch.Generator().manual_seed(3)))
        assert len(a) == len(b)
        for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
            assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def test_streamed_folder_shards_like_in_memory_tensors(tmp_path):
    """A rank of a data-parallel run gets the same share of each batch from a streamed folder as from tensors,
    and its evaluation shard decodes the same images."""
    from cnntrain.data.containers import iterate_batches, shard

    root = make_folder(tmp_path / "big", rgb=True, size=16, per_class=10)
    memory = load_data(folder_cfg(root), seed=0)
    streamed = load_data(folder_cfg(root, in_memory=False), seed=0)
    for rank in (0, 1):
        a = list(
            iterate_batches(
                memory.train, 7, shuffle=True, generator=torch.Generator().manual_seed(3), rank=rank, world=2
            )
        )
        b = list(
            iterate_batches(
                streamed.train, 7, shuffle=True, generator=torch.Generator().manual_seed(3), rank=rank, world=2
            )
        )
        assert len(a) == len(b) > 0
        for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
            assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
        part = shard(streamed.test, rank, 2)
        expected = shard(memory.test, rank, 2)
        assert torch.equal(part.images[:], expected.images[:]) and torch.equal(part.labels, expected.labels)


def test_streamed_folder_trains_end_to_end_with_plots(tmp_path):
    from helpers import compose_config

    root = make_folder(tmp_path / "data", rgb=False, size=20, per_class=12)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.in_memory=false",
        "dataset.num_workers=1",
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=8",
        "trainer.progress=false",
    )
    run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["sizes"]["test"] == 7 and (tmp_path / "run" / "misclassified.png").is_file()
    assert not image_cache.fallback_cache_dir(root).exists(), "the streamed path keeps no decoded copy"
