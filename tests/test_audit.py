"""cnntrain-audit's parts on small made-up inputs (no training): cleanlab's label issues (one class and label
sets), duplicates and leaks by content and perceptual hash, outliers, the cleaned label file, dataset.exclude,
and every bad input as one line. The runs end to end are in test_audit_runs.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntrain.auditing import duplicates, label_issues, outliers, tables
from cnntrain.auditing.folds import Predictions
from cnntrain.auditing.keys import Key
from cnntrain.commands import audit as audit_command

from helpers import TINY_RUN, assert_one_line_error, compose_config, run_main
from synthetic_images import draw, make_folder

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("cleanlab") is None or importlib.util.find_spec("imagehash") is None,
    reason="the audit extra (cleanlab, imagehash) is not installed: pip install 'cnntrain[audit]'",
)  # found, not imported: collection stays quick
pytestmark = needs_extra


def confident(labels: list[int], classes: int, rng: np.random.Generator) -> torch.Tensor:
    probs = rng.uniform(0.0, 0.1, size=(len(labels), classes))
    probs[np.arange(len(labels)), labels] = rng.uniform(0.8, 0.95, size=len(labels))
    return torch.tensor(probs / probs.sum(axis=1, keepdims=True))


def test_a_planted_mislabel_is_flagged_first_with_the_class_it_looks_like():
    rng = np.random.default_rng(0)
    truth = [i % 3 for i in range(60)]
    probs = confident(truth, 3, rng)
    given = list(truth)
    given[7] = 0 if truth[7] != 0 else 2  # the image looks like truth[7]; its label says otherwise
    issues, quality = label_issues.find_issues(torch.tensor(given), probs)
    assert [x.index for x in issues] == [7]
    assert issues[0].given == [given[7]] and issues[0].suggested == [truth[7]]
    assert quality[7] == quality.min() and 0.0 <= quality.min() < 0.2


def test_a_label_set_missing_a_label_is_flagged_by_the_multilabel_variant():
    rng = np.random.default_rng(1)
    sets = torch.tensor([[(i >> b) & 1 for b in range(3)] for i in range(64)], dtype=torch.float32)
    probs = (sets * 0.9 + 0.05 + torch.tensor(rng.uniform(-0.03, 0.03, size=(64, 3)))).clamp(0.01, 0.99)
    given = sets.clone()
    given[5] = torch.tensor([0.0, 0.0, 0.0])  # image 5 clearly shows circle and square; its set is empty
    probs[5] = torch.tensor([0.99, 0.02, 0.99], dtype=probs.dtype)
    issues, _ = label_issues.find_issues(given, probs)
    assert issues and issues[0].index == 5
    assert issues[0].given == [] and issues[0].suggested == [0, 2]


def saved(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def test_copies_across_splits_are_leaks_resized_and_recompressed_ones_too(tmp_path):
    rng = np.random.default_rng(2)
    pictures = [draw(i % 3, 32, rng, rgb=True) for i in range(6)]
    files = [saved(tmp_path / "train" / f"{i}.png", p) for i, p in enumerate(pictures)]
    exact = saved(tmp_path / "test" / "copy.png", pictures[0])
    altered = pictures[1].resize((40, 40)).resize((32, 32))
    near = saved(tmp_path / "test" / "near.jpg", altered, quality=70)
    paths = [*files, exact, near]
    keys = [Key(str(p), "train", i, p) for i, p in enumerate(paths)]
    images = torch.stack(
        [torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((32, 32)))).permute(2, 0, 1) for p in paths]
    )
    embeddings = images.flatten(1).float()
    pairs = duplicates.find_pairs(keys, images, embeddings)
    splits = ["train"] * 6 + ["test", "test"]
    found = {(p.a, p.b, p.kind) for p in pairs}
    assert (0, 6, "exact") in found and (1, 7, "near") in found
    assert all(p.leak(splits) for p in pairs if (p.a, p.b) in ((0, 6), (1, 7)))
    assert all(p.b >= 6 for p in pairs), "distinct drawings are not duplicates"
    assert pairs[0].kind == "exact" and pairs[0].distance == 0 and pairs[0].cosine == pytest.approx(1.0)


def test_blank_tiny_and_stretched_files_and_far_embeddings_are_outliers(tmp_path):
    rng = np.random.default_rng(3)
    normal = saved(tmp_path / "a.png", draw(0, 16, rng, rgb=False))
    blank = saved(tmp_path / "blank.png", Image.new("L", (16, 16), 90))
    tiny = saved(tmp_path / "tiny.png", Image.new("L", (4, 4), 0))
    wide = saved(tmp_path / "wide.png", Image.fromarray(rng.integers(0, 255, (8, 64), dtype=np.uint8)))
    paths = [normal, blank, tiny, wide]
    keys = [Key(str(p), "train", i, p) for i, p in enumerate(paths)]
    images = torch.stack([torch.from_numpy(np.array(Image.open(p).resize((16, 16)))) for p in paths]).unsqueeze(1)
    odd = {(o.index, o.reason) for o in outliers.odd_files(keys, images)}
    assert (1, "constant") in odd and (2, "size") in odd and (3, "aspect") in odd and (0, "constant") not in odd
    generator = torch.Generator().manual_seed(0)
    train = 5.0 + torch.randn(60, 4, generator=generator)  # cleanlab's kNN compares directions (cosine) here
    held = torch.cat([5.0 + torch.randn(5, 4, generator=generator), torch.tensor([[-5.0, 5.0, -5.0, 5.0]])])
    flagged, scores = outliers.embedding_outliers([(train, held, list(range(6)))], 6)
    assert 5 in [o.index for o in flagged] and scores[5] == np.nanmin(scores) and scores[5] < 0.5 * np.nanmax(scores)


def predictions(tmp_path: Path) -> Predictions:
    paths = [tmp_path / "data" / name for name in ("a.png", "b.png", "c.png", "d.png")]
    for p in paths:
        saved(p, Image.new("L", (8, 8), 0))
    return Predictions(
        keys=[Key(str(p), "train", i, p) for i, p in enumerate(paths)],
        splits=["train", "train", "train", "test"],
        labels=torch.tensor([0, 1, 1, 0]),
        probs=torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]]),
        embeddings=torch.zeros(4, 2),
        images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        fold_of=[0, 1, 0, -1],
        classes=["cat", "dog"],
    )


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_the_cleaned_label_file_drops_or_relabels_and_leaves_out_the_copy_outside_test(tmp_path, action):
    pred = predictions(tmp_path)
    issue = label_issues.LabelIssue(1, [1], [0], 0.1, 0.9)
    leak = duplicates.Pair(0, 3, "exact", 0, 1.0)
    plan = tables.cleaning(pred, [issue], [leak], [], action)
    out = tmp_path / "audit"
    out.mkdir()
    cleaned = tables.write_cleaned(out, pred, plan)
    rows = cleaned.read_text().splitlines()
    assert rows[0] == "path,label,split"
    expected = ["c.png,dog,train", "d.png,cat,test"]
    if action == "relabel":
        expected.insert(0, "b.png,cat,train")
    assert rows[1:] == expected
    excluded = (out / "exclude.txt") if tables.write_exclude(out, pred, plan) else None
    assert excluded.read_text().splitlines() == [os.path.abspath(pred.keys[0].path)] + (
        [os.path.abspath(pred.keys[1].path)] if action == "drop" else []
    )


# ---------------------------------------------------------------- dataset.exclude


def test_dataset_exclude_leaves_listed_files_and_keys_out(tmp_path, synthetic_data_root):
    from cnntrain.config.schema import DatasetConfig, section
    from cnntrain.data.loading import train_labels

    root = make_folder(tmp_path / "folder", rgb=False, size=12, per_class=6, test_per_class=2)
    listing = tmp_path / "exclude.txt"
    listing.write_text("# two images\ntrain/circle/0.jpg\n\n" + str(root / "train" / "cross" / "1.png") + "\n")
    listing.rename(root / "exclude.txt")
    base = ["dataset=imagefolder", f"dataset.root={root}", "dataset.val_split=2"]
    whole = train_labels(section(compose_config(*base).dataset, DatasetConfig), 0)
    cfg = compose_config(*base, f"dataset.exclude={root / 'exclude.txt'}")
    assert len(train_labels(section(cfg.dataset, DatasetConfig), 0)) == len(whole) - 2
    keys = tmp_path / "keys.txt"
    keys.write_text("train/0\ntrain/5\ntest/3\n")
    mnist = compose_config(f"dataset.exclude={keys}", "dataset.val_split=100", data_root=synthetic_data_root)
    full = compose_config("dataset.val_split=100", data_root=synthetic_data_root)
    assert (
        len(train_labels(section(mnist.dataset, DatasetConfig), 0))
        == len(train_labels(section(full.dataset, DatasetConfig), 0)) - 2
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), (b"\xff\xfe\x00bad", "UTF-8"), (b"elsewhere/x.png\n", "none of its 1 entries")],
)
def test_a_bad_exclude_list_is_one_line(tmp_path, monkeypatch, content, fragment):
    from cnntrain.commands import train

    root = make_folder(tmp_path / "folder", rgb=False, size=12, per_class=4)
    listing = tmp_path / "exclude.txt"
    if content is not None:
        listing.write_bytes(content)
    argv = ["dataset=imagefolder", f"dataset.root={root}", f"dataset.exclude={listing}", *TINY_RUN]
    result = run_main(train.main, argv, tmp_path, monkeypatch)
    assert_one_line_error(result, "dataset.exclude", fragment)


# ---------------------------------------------------------------- the command's mistakes


def audit(tmp_path: Path, monkeypatch, *argv: str):
    return run_main(audit_command.main, list(argv), tmp_path, monkeypatch)


def test_an_unknown_recipe_or_fix_or_too_few_folds_is_one_line(tmp_path, monkeypatch):
    assert_one_line_error(audit(tmp_path, monkeypatch, "--recipe", "huge"), "--recipe huge", "fast", "config")
    assert_one_line_error(audit(tmp_path, monkeypatch, "--fix", "burn"), "--fix burn", "drop", "relabel")
    assert_one_line_error(audit(tmp_path, monkeypatch, "--folds", "1"), "--folds 1", "K >= 2")
    assert_one_line_error(audit(tmp_path, monkeypatch, "dataset.fold=1"), "dataset.fold=1", "--folds")
    both = audit(tmp_path, monkeypatch, "dataset=mnist", "--runs", str(tmp_path))
    assert_one_line_error(both, "dataset=mnist", "not both")
    assert not (tmp_path / "audit").exists()


def test_a_class_with_too_few_images_for_k_folds_is_named(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "folder", rgb=False, size=12, per_class=8, test_per_class=2)
    for extra in sorted((root / "train" / "square").iterdir())[2:]:
        extra.unlink()
    result = audit(tmp_path, monkeypatch, "dataset=imagefolder", f"dataset.root={root}", "--folds", "3")
    assert_one_line_error(result, "'square'", "2 image(s)", "3 folds")
    assert not (tmp_path / "audit").exists()
    inside = audit(tmp_path, monkeypatch, "dataset=imagefolder", f"dataset.root={root}", "--out", str(root / "audit"))
    assert_one_line_error(inside, f"--out {root / 'audit'}", "never writes into the data")
    assert not (root / "audit").exists()


def test_a_streamed_source_without_an_index_is_refused(tmp_path, monkeypatch):
    shards = "dataset.train=" + str(tmp_path / "train-000000.tar")
    result = audit(tmp_path, monkeypatch, "dataset=webdataset", shards)
    assert_one_line_error(result, "dataset=webdataset", "stable key")


def test_without_the_audit_extra_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cleanlab", None)
    assert_one_line_error(audit(tmp_path, monkeypatch, "dataset=mnist"), "cleanlab", "cnntrain[audit]")


def test_runs_that_are_not_folds_and_an_out_folder_that_is_a_link_are_refused(tmp_path, monkeypatch, one_epoch_run):
    result = audit(tmp_path, monkeypatch, "--runs", str(one_epoch_run))
    assert_one_line_error(result, "is not a fold run", "dataset.folds")
    assert_one_line_error(audit(tmp_path, monkeypatch, "--runs", str(tmp_path / "none")), "no such folder")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    result = audit(tmp_path, monkeypatch, "--runs", str(one_epoch_run), "--out", str(tmp_path / "link"))
    assert_one_line_error(result, "symbolic link")
    assert list((tmp_path / "elsewhere").iterdir()) == []
