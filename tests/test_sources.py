"""The data sources behind one interface: torchvision and class folders give the splits they gave before the
sources moved into cnntrain/data/sources/ (pinned byte for byte), and class folders are read in the layouts
datasets ship in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnntrain.commands.train import main
from cnntrain.data.loading import describe_data, load_data, train_labels
from cnntrain.errors import DataError

from helpers import dataset_section, run_main
from synthetic_idx import write_idx_dataset
from synthetic_images import CLASSES, draw

MNIST = dict(
    name="mnist",
    kind="torchvision",
    torchvision_class="MNIST",
    download=False,
    input_shape=None,
    num_classes=None,
    classes=None,
    mean=None,
    std=None,
    val_split=0.1,
    val_strategy="random",
    folds=None,
    fold=None,
    split=None,
)
FOLDER = dict(
    name="imagefolder",
    kind="imagefolder",
    image_size=None,
    channels=None,
    input_shape=None,
    num_classes=None,
    classes=None,
    mean=None,
    std=None,
    test_split=0.2,
    in_memory=True,
    num_workers=0,
    val_split=0.1,
    val_strategy="stratified",
    folds=None,
    fold=None,
)

# sha256 (first 16 hex digits) of every split's images and labels, as the code before the move to data/sources/
# (commit 3ea2006) loaded them with seed 7. Only integers are hashed, so they hold on any CPU.
PINNED = {
    "mnist": ("554df9d27a9d8bc0", 540, 60, 200),
    "mnist-stratified": ("f449acdfbc40873b", 550, 50, 200),
    "mnist-fold": ("53cf30a141ee74d0", 400, 200, 200),
    "folder": ("a0a70fe16283bb3b", 54, 6, 15),
    "folder-fold": ("50c70edc00616cb2", 45, 15, 15),
}


@pytest.fixture(scope="module")
def pinned_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pinned")
    write_idx_dataset(root, "MNIST", n_train=600, n_test=200, seed=5)
    rng = np.random.default_rng(3)
    for label, name in enumerate(CLASSES):
        (root / "folder" / "train" / name).mkdir(parents=True)
        for i in range(25):
            draw(label, 12, rng, rgb=bool(i % 2)).save(root / "folder" / "train" / name / f"{i:02d}.png")
    return root


def digest(bundle) -> str:
    h = hashlib.sha256()
    for split in (bundle.train, bundle.val, bundle.test):
        h.update(split.images[:].contiguous().numpy().tobytes())
        h.update(split.labels.numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", PINNED)
def test_torchvision_and_folder_splits_are_those_of_before_the_sources_moved(pinned_root, name):
    if name.startswith("mnist"):
        base = MNIST | {"root": str(pinned_root)}
    else:
        base = FOLDER | {"root": str(pinned_root / "folder")}
    extra = {
        "mnist-stratified": {"val_strategy": "stratified", "val_split": 50},
        "mnist-fold": {"folds": 3, "fold": 1},
        "folder-fold": {"folds": 4, "fold": 2},
    }.get(name, {})
    bundle = load_data(dataset_section(base | extra), seed=7)
    assert (digest(bundle), len(bundle.train), len(bundle.val), len(bundle.test)) == PINNED[name]


def make_layout(root: Path, splits: dict[str, int], *, nested: bool = False, seed: int = 0) -> Path:
    """PNG images per class under root/<split>/<class>/ (split "" = root/<class>/), optionally one level deeper."""
    rng = np.random.default_rng(seed)
    for split, count in splits.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name if split else root / name
            for i in range(count):
                target = folder / f"part{i % 2}" if nested else folder
                target.mkdir(parents=True, exist_ok=True)
                draw(label, 12, rng, rgb=False).save(target / f"{i:03d}.png")
    return root


def folder_cfg(root: Path, **overrides):
    return dataset_section(FOLDER | {"root": str(root)} | overrides)


def test_class_folders_without_split_folders_split_val_and_test_off_stratified(tmp_path):
    root = make_layout(tmp_path / "flat", {"": 20})
    bundle = load_data(folder_cfg(root, test_split=0.25, val_split=0.2), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (36, 9, 15)
    for split in (bundle.val, bundle.test):
        assert torch.bincount(split.labels, minlength=3).tolist() in ([3, 3, 3], [5, 5, 5]), "stratified"
    assert bundle.classes == list(CLASSES)
    assert "class folders" in bundle.layout and "validation and test split off" in bundle.layout


def test_the_flat_layout_reads_the_same_images_as_a_train_folder_without_test(tmp_path):
    flat = make_layout(tmp_path / "flat", {"": 12}, seed=4)
    nested = make_layout(tmp_path / "split", {"train": 12}, seed=4)
    a, b = load_data(folder_cfg(flat), seed=1), load_data(folder_cfg(nested), seed=1)
    assert digest(a) == digest(b)


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val"])
def test_a_val_folder_is_the_validation_split(tmp_path, val_name):
    root = make_layout(tmp_path / "r", {"train": 10, val_name: 4, "test": 5})
    bundle = load_data(folder_cfg(root), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (30, 12, 15)
    assert f"{val_name}/" in bundle.layout and "split off" not in bundle.layout
    assert torch.equal(train_labels(folder_cfg(root), 0), bundle.train.labels)


def test_a_val_folder_without_test_holds_test_out_of_train(tmp_path):
    root = make_layout(tmp_path / "r", {"train": 10, "val": 4})
    bundle = load_data(folder_cfg(root, test_split=0.2), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 12, 6)
    assert "test split off train" in bundle.layout


def test_folds_cross_validate_over_train_and_val_together(tmp_path):
    root = make_layout(tmp_path / "r", {"train": 8, "val": 4, "test": 2})
    bundle = load_data(folder_cfg(root, folds=4, fold=0), seed=0)
    assert len(bundle.train) + len(bundle.val) == 36 and len(bundle.val) == 9


def test_nested_folders_and_hidden_files(tmp_path):
    root = make_layout(tmp_path / "r", {"train": 6}, nested=True)
    (root / "train" / "circle" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "circle" / "._000.png").write_bytes(b"AppleDouble")
    (root / "train" / ".hidden_class").mkdir()
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    facts = describe_data(folder_cfg(root))
    assert facts.classes == list(CLASSES)
    assert len(facts.found.train_files) == 18
    assert all(p.parent.name in ("part0", "part1") for p, _ in facts.found.train_files)


def test_a_zip_archives_macosx_folder_is_not_a_class(tmp_path):
    root = make_layout(tmp_path / "r", {"": 6})
    (root / "__MACOSX" / "circle").mkdir(parents=True)
    (root / "__MACOSX" / "circle" / "._000.png").write_bytes(b"AppleDouble")
    assert describe_data(folder_cfg(root)).classes == list(CLASSES)


def test_an_unlabelled_test_folder_of_loose_images_is_left_out_and_said(tmp_path):
    root = make_layout(tmp_path / "r", {"train": 10, "val": 2})
    (root / "test").mkdir()
    for i in range(4):
        draw(0, 12, np.random.default_rng(i), rgb=False).save(root / "test" / f"{i}.png")
    bundle = load_data(folder_cfg(root, test_split=0.2), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 6, 6)
    assert bundle.layout.endswith("test split off train (stratified) (test/ has no class folders: not used)")


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"test": 3}, "has test/ but no train/ folder"),
        ({"train": 3, "val": 2, "extra_val": 0}, "has class folder\\(s\\) dog that .*train lacks"),
        ({"train": 3, "val": 0}, "val holds no images"),
    ],
)
def test_layout_mistakes_are_named(tmp_path, layout, message):
    root = tmp_path / "r"
    make_layout(root, {k: v for k, v in layout.items() if v and k != "extra_val"})
    if "extra_val" in layout:
        (root / "val" / "dog").mkdir(parents=True)
    if layout.get("val") == 0:
        (root / "val" / "circle").mkdir(parents=True)
    with pytest.raises(DataError, match=message):
        load_data(folder_cfg(root), seed=0)


@pytest.mark.slow
def test_a_run_on_class_folders_says_and_records_its_layout(tmp_path, monkeypatch):
    root = make_layout(tmp_path / "photos", {"": 16})
    run_dir = tmp_path / "run"
    result = run_main(
        main,
        [
            "dataset=imagefolder",
            f"dataset.root={root}",
            "model=cnn2",
            "trainer.epochs=1",
            "trainer.batch_size=8",
            "trainer.progress=false",
            "report.plots=false",
            f"hydra.run.dir='{run_dir}'",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"]["kind"] == "imagefolder"
    assert summary["data"]["layout"].startswith(f"class folders {root}/<class>/")
    assert f"data: class folders {root}/<class>/" in (run_dir / "train.log").read_text()
    assert summary["sizes"] == {"train": 34, "val": 4, "test": 10}
