"""WebDataset shards without a class list: integer labels name classes 0..N-1 (dataset.num_classes or the largest
label seen), names name themselves, and label sets are found as in label files. Shards written by webdataset's
own TarWriter from drawn images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from cnntrain.commands import train as train_command
from cnntrain.data.loading import load_data
from cnntrain.data.sources.shard_labels import entry_delimiter, shard_classes

from helpers import assert_one_line_error, compose_config, dataset_section, run_main
from synthetic_images import draw

wds = pytest.importorskip("webdataset")

RUN = ("model=cnn2", "trainer.epochs=1", "report.plots=false", "trainer.progress=false", "dataset.num_workers=0")


def png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write(folder: Path, labels: list[str]) -> str:
    """One shard folder/train.tar of drawn 8x8 images with these label entries (no classes.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(folder / "train.tar")) as sink:
        for i, label in enumerate(labels):
            sink.write({"__key__": f"s{i:04d}", "png": png(draw(i % 3, 8, rng, rgb=False)), "cls": label})
    return str(folder / "train.tar")


def data(shard: str, *overrides: str):
    cfg = compose_config("dataset=webdataset", f"dataset.train={shard}", "dataset.num_workers=0", *overrides)
    return load_data(cfg.dataset, seed=0)


def test_integer_labels_name_classes_up_to_num_classes(tmp_path):
    shard = write(tmp_path, [str(i % 7) for i in range(60)])
    found = data(shard, "dataset.num_classes=10")
    assert found.classes == [str(i) for i in range(10)]
    assert "classes 0..9 by number (dataset.num_classes=10)" in found.layout
    labels = torch.cat([found.train.labels, found.val.labels, found.test.labels])
    assert sorted(labels.tolist()) == sorted(i % 7 for i in range(60))


def test_integer_labels_without_num_classes_take_the_largest_seen(tmp_path):
    shard = write(tmp_path, [str(i % 7) for i in range(60)])
    found = data(shard)
    assert found.classes == [str(i) for i in range(7)] and "(the largest label seen)" in found.layout


def test_names_in_the_shards_name_the_classes(tmp_path):
    shard = write(tmp_path, [("zebra", "ant", "moth")[i % 3] for i in range(30)])
    found = data(shard)
    assert found.classes == ["ant", "moth", "zebra"] and "3 classes named by the labels found" in found.layout


def test_label_sets_in_shards_are_found_as_in_label_files(tmp_path):
    shard = write(tmp_path, [";".join(str(b) for b in range(3) if (i % 8) >> b & 1) for i in range(48)])
    found = data(shard, "dataset.task=multilabel")
    assert found.classes == ["0", "1", "2"]
    assert 'entries split on ";"' in found.layout
    labels = torch.cat([found.train.labels, found.val.labels, found.test.labels])
    assert labels.shape == (48, 3) and int(labels.sum()) == sum(bin(i % 8).count("1") for i in range(48))


def test_json_lists_in_shards_are_sets_without_any_setting():
    cfg = dataset_section({"name": "w", "kind": "webdataset", "train": "x.tar"})
    assert entry_delimiter(cfg, ['["a", "b"]', '["c"]']) is not None
    assert entry_delimiter(cfg, ["1", "2"]) is None


def test_a_single_label_run_on_label_sets_says_so(tmp_path):
    shard = write(tmp_path, [";".join(str(b) for b in range(3) if (i % 7 + 1) >> b & 1) for i in range(42)])
    found = data(shard)
    assert 'the label entries looks like label sets split on ";"' in found.layout


def test_a_label_beyond_num_classes_is_one_line(tmp_path, monkeypatch):
    shard = write(tmp_path / "d", [str(i % 7) for i in range(30)])
    result = run_main(
        train_command.main,
        [*RUN, "dataset=webdataset", f"dataset.train={shard}", "dataset.num_classes=5"],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(result, "the shards hold label 6, outside dataset.num_classes=5 (0..4)")


def test_a_named_classes_file_that_is_missing_is_one_line(tmp_path):
    cfg = dataset_section(
        {"name": "w", "kind": "webdataset", "train": "x.tar", "classes_file": str(tmp_path / "none.txt")}
    )
    with pytest.raises(Exception, match="dataset.classes_file .*none.txt not found"):
        shard_classes(cfg, str(tmp_path / "x.tar"), ["0", "1"], None)
