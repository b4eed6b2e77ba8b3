"""Label files (dataset=labels): a CSV, TSV or JSON Lines file of image paths and labels, read into the same
splits, folds and runs as every other source; each mistake in the file is one line naming the file and line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from cnntrain.commands import evaluate, predict, train
from cnntrain.data import image_cache, lazy_images
from cnntrain.data.images import decode_image
from cnntrain.data.loading import describe_data, load_data, train_labels
from cnntrain.errors import DataError

from helpers import cli_env, cnntrain_command, dataset_section, run_main
from synthetic_images import CLASSES, make_labelled_images, write_label_file

PER_CLASS = 10  # 30 images: rows 0, 10, 20 are test, rows 1, 11, 21 val, the rest train (each split has every class)


def split_of(row: int) -> str:
    return {0: "test", 1: "val"}.get(row % 10, "train")


def rows(drawn, *, split: bool = True, label=lambda index: CLASSES[index], path=lambda rel: rel) -> list[dict]:
    made = []
    for r, (relative, index) in enumerate(drawn):
        row = {"path": path(relative), "label": label(index)}
        if split:
            row["split"] = split_of(r)
        made.append(row)
    return made


def label_cfg(file: Path | str, **overrides):
    cfg = {
        "name": "labels",
        "kind": "labels",
        "root": "unused",
        "file": str(file),
        "image_dir": None,
        "path_column": None,
        "label_column": None,
        "split_column": None,
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
        "in_memory": True,
        "num_workers": 0,
        "folds": None,
        "fold": None,
    }
    cfg.update(overrides)
    return dataset_section(cfg)


@pytest.fixture
def drawn(tmp_path):
    return make_labelled_images(tmp_path / "data", per_class=PER_CLASS)


# -- reading ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, format_name", [(".csv", "CSV"), (".tsv", "TSV"), (".jsonl", "JSON Lines"), (".ndjson", "JSON Lines")]
)
def test_each_format_gives_the_files_splits_in_file_order(tmp_path, drawn, suffix, format_name):
    file = write_label_file(tmp_path / "data" / f"labels{suffix}", rows(drawn))
    bundle = load_data(label_cfg(file), seed=0)
    assert bundle.classes == list(CLASSES) and bundle.input_shape == (1, 16, 16)
    expected = {
        name: [(rel, i) for r, (rel, i) in enumerate(drawn) if split_of(r) == name] for name in ("train", "val", "test")
    }
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 3, 3)
    assert bundle.val.labels.tolist() == [i for _, i in expected["val"]]
    assert bundle.test.labels.tolist() == [i for _, i in expected["test"]]
    for position, (relative, _) in enumerate(expected["val"]):
        assert torch.equal(bundle.val.images[position], decode_image(tmp_path / "data" / relative, 1, 16, 16))
    assert bundle.layout == (
        f"label file {file} ({format_name}, columns path/label/split): train 24, val 3, test 3 rows"
    )


def test_without_a_split_column_val_and_test_are_split_off_train(tmp_path, drawn):
    file = write_label_file(tmp_path / "data" / "labels.csv", rows(drawn, split=False))
    bundle = load_data(label_cfg(file, val_split=3), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (21, 3, 6)
    assert torch.bincount(bundle.test.labels).tolist() == [2, 2, 2], "the held-out test set is stratified"
    assert bundle.layout.endswith(
        "(CSV, columns path/label): train 30 rows; validation and test split off train (stratified)"
    )


def test_integer_labels_are_classes_sorted_as_numbers(tmp_path, drawn):
    numbers = (10, 9, 2)  # sorted as text, '10' would come first
    file = write_label_file(tmp_path / "data" / "labels.jsonl", rows(drawn, label=lambda i: numbers[i]))
    facts = describe_data(label_cfg(file))
    assert facts.classes == ["2", "9", "10"]
    bundle = load_data(label_cfg(file), seed=0)
    assert bundle.test.labels.tolist() == [["2", "9", "10"].index(str(numbers[i])) for i in (0, 1, 2)]
    again = load_data(label_cfg(file, classes=facts.classes), seed=0)  # as a run's saved config holds them
    assert torch.equal(again.test.labels, bundle.test.labels) and again.classes == bundle.classes


def test_configured_classes_give_the_order_and_integers_index_into_them(tmp_path, drawn):
    names = write_label_file(tmp_path / "data" / "names.csv", rows(drawn))
    order = ["square", "circle", "cross"]
    bundle = load_data(label_cfg(names, classes=order), seed=0)
    assert bundle.classes == order
    assert bundle.test.labels.tolist() == [order.index(CLASSES[i]) for i in (0, 1, 2)] == [1, 2, 0]
    indices = write_label_file(tmp_path / "data" / "indices.tsv", rows(drawn, label=lambda i: str(i)))
    bundle = load_data(label_cfg(indices, classes=list(CLASSES)), seed=0)
    assert bundle.classes == list(CLASSES) and bundle.test.labels.tolist() == [0, 1, 2]


def test_relative_and_absolute_paths_and_a_relative_label_file(tmp_path, drawn, monkeypatch):
    made = rows(drawn, path=lambda rel: str(tmp_path / "data" / rel) if rel.startswith("part0") else rel)
    assert any(Path(r["path"]).is_absolute() for r in made) and not all(Path(r["path"]).is_absolute() for r in made)
    write_label_file(
        tmp_path / "data" / "lists" / "labels.csv",
        [{**r, "path": r["path"] if Path(r["path"]).is_absolute() else f"../{r['path']}"} for r in made],
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"labels\.csv, line 2: .* leads outside data/lists .*allow_outside_paths=true"):
        load_data(label_cfg("data/lists/labels.csv"), seed=0)  # a shared label file reads only its own folder
    bundle = load_data(label_cfg("data/lists/labels.csv", allow_outside_paths=True), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 3, 3)
    assert "images outside its folder allowed (dataset.allow_outside_paths)" in bundle.layout
    assert image_cache.fallback_cache_dir(tmp_path / "data" / "lists").is_dir(), "cached for the label file's folder"


def test_ids_without_a_suffix_and_an_image_dir(tmp_path, drawn):
    """Many label files name images by id ('part0/circle-0' for part0/circle-0.png) and keep them in a folder of
    their own beside the file (dataset.image_dir): both read the same images as full paths do."""
    full = load_data(label_cfg(write_label_file(tmp_path / "data" / "full.csv", rows(drawn))), seed=0)
    ids = rows(drawn, path=lambda rel: rel[: -len(".png")])
    (tmp_path / "data" / "part1" / "square-1.png").rename(tmp_path / "data" / "part1" / "square-1.PNG")
    file = write_label_file(tmp_path / "lists" / "ids.csv", ids)
    bundle = load_data(label_cfg(file, image_dir="../data"), seed=0)
    assert torch.equal(bundle.train.images[:], full.train.images[:])
    assert torch.equal(bundle.test.labels, full.test.labels)
    with pytest.raises(
        DataError,
        match=r"ids\.csv, line 2: image .*/lists/part0/circle-0 not found, and 29 more "
        r"image\(s\) are missing; relative paths are read from .*/lists "
        r"\(dataset\.image_dir\)",
    ):
        load_data(label_cfg(file), seed=0)


def test_columns_are_found_by_their_usual_names_or_named(tmp_path, drawn):
    renamed = [{"image_path": r["path"], "category": r["label"], "part": r["split"]} for r in rows(drawn)]
    file = write_label_file(tmp_path / "data" / "labels.csv", renamed)
    bundle = load_data(label_cfg(file), seed=0)
    assert len(bundle.test) == 6 and len(bundle.train) + len(bundle.val) == 24, "no split column: split off train"
    bundle = load_data(label_cfg(file, split_column="part"), seed=0)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (24, 3, 3)
    assert "columns image_path/category/part" in bundle.layout


def test_the_labels_are_read_without_decoding_an_image(tmp_path, drawn, monkeypatch):
    file = write_label_file(tmp_path / "data" / "labels.csv", rows(drawn))
    cfg = label_cfg(file, folds=3, fold=1)
    expected = load_data(cfg, seed=4).train.labels

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image to read labels")

    monkeypatch.setattr(lazy_images, "decode_image", no_decoding)
    monkeypatch.setattr(image_cache, "decode_files", no_decoding)
    found = train_labels(cfg, seed=4)
    assert torch.equal(found, expected) and len(found) == 18  # 27 train+val rows, one fold of 3 validates


# -- mistakes ---------------------------------------------------------------------------------------------------

GOOD = [{"path": f"part{k % 2}/{name}-{k}.png", "label": name} for k in range(2) for name in CLASSES]  # lines 2-7


@pytest.mark.parametrize(
    "name, content, overrides, message",
    [
        (
            "nope.csv",
            None,
            {},
            r"label file .*nope\.csv not found; set dataset.file to a \.csv, \.tsv, \.jsonl, "
            r"\.ndjson file",
        ),
        (
            "labels.txt",
            "path\tlabel\n",
            {},
            r"labels\.txt: unknown format '\.txt'; expected \.csv, \.tsv, \.jsonl, "
            r"\.ndjson",
        ),
        ("empty.csv", "", {}, r"empty\.csv is empty; its first line must be a header naming the columns"),
        ("header.csv", "path,label\n", {}, r"header\.csv has a header but no rows"),
        (
            "columns.csv",
            "img,cls\npart0/circle-0.png,circle\n",
            {},
            r"columns\.csv: no path column \(looked for path, image, file, filename, filepath, image_path\); "
            r"its columns: "
            r"img, cls; name it with dataset\.path_column",
        ),
        ("nolabel.csv", "path,kind\npart0/circle-0.png,circle\n", {}, r"no label column \(looked for label, class, "),
        (
            "named.csv",
            "path,label\npart0/circle-0.png,circle\n",
            {"label_column": "klass"},
            r"named\.csv: dataset\.label_column=klass is not one of its columns \(path, label\)",
        ),
        (
            "ghost.csv",
            GOOD + [{"path": "ghost.png", "label": "cross"}, {"path": "gone.png", "label": "cross"}],
            {},
            r"ghost\.csv, line 8: image .*ghost\.png not found, and 1 more image\(s\) are missing; relative paths are "
            r"read from",
        ),
        (
            "split.csv",
            [{**r, "split": "train"} for r in GOOD[:3]] + [{**GOOD[3], "split": "training"}],
            {},
            r"split\.csv, line 5: split is 'training'; expected one of train, val, valid, validation, test "
            r"on every row",
        ),
        (
            "nosplit.csv",
            [{**r, "split": "train"} for r in GOOD[:3]] + [{**GOOD[3], "split": ""}],
            {},
            r"line 5: split is empty; expected one of train",
        ),
        ("alltest.csv", [{**r, "split": "test"} for r in GOOD], {}, r"no row has split=train"),
        (
            "oneclass.csv",
            [{**r, "label": "circle"} for r in GOOD],
            {},
            r"oneclass\.csv: column 'label' holds one class \(circle\); a classifier needs at least 2",
        ),
        ("twice.csv", GOOD + [GOOD[1]], {}, r"twice\.csv: lines 3 and 8 both name part0/cross-0\.png; each image"),
        ("twice-abs.csv", GOOD + [{**GOOD[1], "path": "part0/../part0/cross-0.png"}], {}, r"lines 3 and 8 both name"),
        (
            "unlisted.csv",
            GOOD,
            {"classes": ["circle", "cross"]},
            r"unlisted\.csv, line 4: label 'square' is not in dataset\.classes \(circle, cross\) nor an index 0\.\.1",
        ),
        (
            "index.csv",
            [{**r, "label": "5"} for r in GOOD],
            {"classes": list(CLASSES)},
            r"line 2: label '5' is not in dataset\.classes \(circle, cross, square\) nor an index 0\.\.2",
        ),
        (
            "blank.csv",
            GOOD[:2] + [{**GOOD[2], "label": " "}],
            {},
            r"blank\.csv, line 4: label is empty; every row needs a class name or a whole number",
        ),
        ("short.csv", "path,label\npart0/circle-0.png\n", {}, r"short\.csv, line 2: label is empty"),
        (
            "long.csv",
            "path,label\npart0/circle-0.png,circle,extra\n",
            {},
            r"long\.csv, line 2: 3 fields but the header names 2 \(path, label\)",
        ),
        (
            "pdf.csv",
            GOOD + [{"path": "notes.pdf", "label": "cross"}],
            {},
            r"pdf\.csv, line 8: notes\.pdf is not an image file; expected \.png, \.jpg, \.jpeg, \.webp",
        ),
        (
            "bad.jsonl",
            json.dumps(GOOD[0]) + '\n{"path": "x.png", \n',
            {},
            r"bad\.jsonl, line 2: not valid JSON \(.*\); JSON Lines hold one object per line",
        ),
        ("list.jsonl", json.dumps(GOOD[0]) + "\n\n[1, 2]\n", {}, r"list\.jsonl, line 3: a JSON list, not an object"),
        (
            "float.jsonl",
            "".join(json.dumps(r) + "\n" for r in GOOD[:2]) + json.dumps({**GOOD[2], "label": 1.5}) + "\n",
            {},
            r"float\.jsonl, line 3: label is 1\.5; expected a class name or a whole number",
        ),
        (
            "nopath.jsonl",
            json.dumps(GOOD[0]) + "\n" + json.dumps({"label": "cross"}) + "\n",
            {},
            r"nopath\.jsonl, line 2: path is empty; expected an image path",
        ),
    ],
)
def test_label_file_mistakes_name_the_file_and_line(tmp_path, drawn, name, content, overrides, message):
    file = tmp_path / "data" / name
    if isinstance(content, list):
        write_label_file(file, content)
    elif content is not None:
        file.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        load_data(label_cfg(file, **overrides), seed=0)
    assert "\n" not in str(caught.value)


def test_an_unreadable_label_file_is_named(tmp_path, drawn):
    file = tmp_path / "data" / "latin1.csv"
    file.write_bytes("path,label\npart0/circle-0.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot read label file .*latin1\.csv: 'utf-8' codec can't decode"):
        load_data(label_cfg(file), seed=0)


# -- runs -------------------------------------------------------------------------------------------------------

RUN = (
    "dataset=labels",
    "model=cnn2",
    "trainer.epochs=2",
    "trainer.batch_size=16",
    "trainer.progress=false",
    "report.plots=false",
    "device=cpu",
)


def test_a_run_then_eval_and_predict_on_it(tmp_path, monkeypatch):
    drawn = make_labelled_images(tmp_path / "data", per_class=30)
    file = write_label_file(tmp_path / "data" / "labels.csv", rows(drawn))
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        [*RUN, f"dataset.file={file}", "trainer.sampler=balanced", f"hydra.run.dir='{run_dir}'"],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"] == list(CLASSES) and summary["sizes"] == {"train": 72, "val": 9, "test": 9}
    assert summary["data"] == {
        "kind": "labels",
        "layout": f"label file {file} (CSV, columns path/label/split): train 72, val 9, test 9 rows",
        "skipped_images": 0,
    }
    assert sum(map(sum, summary["confusion_matrix"])) == 9

    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["images"] == 9 and evaluated["classes"] == list(CLASSES)
    assert evaluated["confusion_matrix"] == summary["confusion_matrix"], "eval rebuilt the same test rows"

    result = run_main(
        predict.main, [str(run_dir), str(tmp_path / "data" / drawn[0][0]), "--json"], tmp_path, monkeypatch
    )
    assert result.returncode == 0, result.stderr
    assert json.dumps(CLASSES[0]) in result.stdout and "cross" in result.stdout


def test_k_folds_with_balanced_class_weights(tmp_path, monkeypatch):
    drawn = make_labelled_images(tmp_path / "data", per_class=30)
    file = write_label_file(tmp_path / "data" / "labels.tsv", rows(drawn, label=lambda i: i))  # integer labels
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        [
            *RUN,
            f"dataset.file={file}",
            "dataset.folds=3",
            "dataset.fold=1",
            "trainer.class_weights=balanced",
            f"hydra.run.dir='{run_dir}'",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"] == ["0", "1", "2"]
    assert summary["sizes"] == {"train": 54, "val": 27, "test": 9}, "the val rows join train; one fold of 3 validates"
    assert summary["train_class_counts"] == {"0": 18, "1": 18, "2": 18}


@pytest.mark.slow
def test_a_two_rank_run_on_a_label_file(tmp_path):
    drawn = make_labelled_images(tmp_path / "data", per_class=20)
    file = write_label_file(tmp_path / "data" / "labels.jsonl", rows(drawn, split=False))
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            *cnntrain_command(),
            *RUN,
            f"dataset.file={file}",
            "trainer.devices=2",
            "trainer.epochs=1",
            "trainer.early_stopping.enabled=false",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parallel"]["world_size"] == 2 and summary["classes"] == list(CLASSES)
    assert summary["sizes"] == {"train": 43, "val": 5, "test": 12}


def test_in_memory_false_streams_the_same_images(tmp_path, drawn):
    file = write_label_file(tmp_path / "data" / "labels.csv", rows(drawn))
    held = load_data(label_cfg(file), seed=0)
    lazy = load_data(label_cfg(file, in_memory=False, mean=held.description.mean, std=held.description.std), seed=0)
    assert isinstance(lazy.val.images, lazy_images.LazyImages)
    assert torch.equal(lazy.val.images[0:3], held.val.images[:]) and torch.equal(lazy.train.labels, held.train.labels)


def test_the_label_file_is_read_once_per_run(tmp_path, monkeypatch):
    from cnntrain.data.sources import label_files

    drawn = make_labelled_images(tmp_path / "data", per_class=6)
    file = write_label_file(tmp_path / "data" / "labels.csv", rows(drawn, split=False))
    scans = []
    real = label_files.scan_label_file
    monkeypatch.setattr(label_files, "scan_label_file", lambda cfg: scans.append(1) or real(cfg))
    result = run_main(
        train.main,
        [
            *RUN,
            f"dataset.file={file}",
            "trainer.epochs=1",
            "trainer.sampler=balanced",
            f"hydra.run.dir='{tmp_path / 'run'}'",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    assert len(scans) == 1
