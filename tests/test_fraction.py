"""dataset.fraction: a seeded, stratified share of the training split, for quick trials; validation and test
stay whole, for every source (in-memory tensors, image folders, streamed shards)."""

from __future__ import annotations

import pytest
import torch

from cnntrain.data.loading import load_data, train_labels
from cnntrain.data.split import fraction_indices

from helpers import TINY_RUN, assert_one_line_error, run_main
from synthetic_images import make_folder


def test_fraction_indices_are_stratified_seeded_and_sorted():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept = fraction_indices(labels, 0.3, seed=1)
    assert len(kept) == 30 and torch.equal(kept, kept.sort().values) and len(set(kept.tolist())) == 30
    assert torch.bincount(labels[kept]).tolist() == [15, 9, 6]
    assert torch.equal(kept, fraction_indices(labels, 0.3, seed=1))
    assert not torch.equal(kept, fraction_indices(labels, 0.3, seed=2))


def test_a_tiny_fraction_keeps_every_class():
    labels = torch.tensor([0] * 98 + [1, 2])
    kept = fraction_indices(labels, 0.01, seed=0)
    assert sorted(labels[kept].tolist()) == [0, 1, 2]


def test_fraction_trims_train_only(tiny_config):
    whole = load_data(tiny_config().dataset, seed=3)
    part = load_data(tiny_config("dataset.fraction=0.25").dataset, seed=3)
    assert len(part.train) == round(0.25 * len(whole.train))
    for name in ("val", "test"):
        assert torch.equal(getattr(part, name).images[:], getattr(whole, name).images[:]), name
        assert torch.equal(getattr(part, name).labels, getattr(whole, name).labels), name
    rows = {tuple(row.flatten().tolist()) for row in whole.train.images[:, :, ::7, ::7]}
    assert all(tuple(row.flatten().tolist()) in rows for row in part.train.images[:, :, ::7, ::7])
    counts_whole, counts_part = torch.bincount(whole.train.labels), torch.bincount(part.train.labels)
    assert ((counts_part - 0.25 * counts_whole).abs() < 1).all(), "each class keeps its share"
    assert "dataset.fraction=0.25: training on 270 of 1,080 training images" in part.layout
    assert torch.equal(train_labels(tiny_config("dataset.fraction=0.25").dataset, seed=3), part.train.labels), (
        "the preflight sees the same training split as the run"
    )


def test_fraction_on_an_image_folder_with_folds(tmp_path):
    from helpers import compose_config

    make_folder(tmp_path / "pics", rgb=False, size=12, per_class=20)
    cfg = compose_config(
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'pics'}",
        "dataset.folds=4",
        "dataset.fold=1",
        "dataset.fraction=0.5",
        "dataset.num_workers=0",
    )
    whole = compose_config(
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'pics'}",
        "dataset.folds=4",
        "dataset.fold=1",
        "dataset.num_workers=0",
    )
    part, full = load_data(cfg.dataset, seed=0), load_data(whole.dataset, seed=0)
    assert len(part.train) == round(len(full.train) / 2)
    assert torch.equal(part.val.labels, full.val.labels) and torch.equal(part.test.labels, full.test.labels)


@pytest.mark.slow
def test_a_run_says_its_fraction_first(tmp_path, monkeypatch, synthetic_data_root):
    from cnntrain.commands.train import main

    result = run_main(
        main,
        [
            *TINY_RUN,
            "trainer.epochs=1",
            "trainer.progress=false",
            "dataset.fraction=0.1",
            f"hydra.run.dir='{tmp_path / 'run'}'",
        ],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert result.returncode == 0, result.stderr
    head = result.stdout.splitlines()[:3]
    assert "108 train / 120 val / 300 test images" in head[0]
    assert "dataset.fraction=0.1: training on 108 of 1,080 training images" in " ".join(head[1:])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0", "dataset.fraction=0.0: must be in (0, 1], the share of the training split to train on"),
        ("1.5", "dataset.fraction=1.5: must be in (0, 1]"),
        ("-0.2", "dataset.fraction=-0.2: must be in (0, 1]"),
        ("nan", "dataset.fraction=nan: must be in (0, 1]"),
        ("half", "dataset.fraction"),
    ],
)
def test_bad_fractions_are_one_line(tmp_path, monkeypatch, synthetic_data_root, value, fragment):
    from cnntrain.commands.train import main

    result = run_main(
        main,
        [*TINY_RUN, f"dataset.fraction={value}"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, fragment, cwd=tmp_path)
