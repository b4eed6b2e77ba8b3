"""Multi-label classification: label sets read from label files, the metrics (against values worked out by hand),
thresholds, iterative stratification, the BCE loss and its weights, mixing, and runs through every command."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
import torch.nn.functional as F

import cnntrain
from cnntrain.commands import evaluate, export, predict, reproduce, train
from cnntrain.data.loading import describe_data, load_data
from cnntrain.data.mixing import mixup
from cnntrain.data.multilabel_splits import balanced_draws, fold_sizes, stratified_parts
from cnntrain.data.split import fold_indices, split_indices
from cnntrain.errors import DataError
from cnntrain.reporting.label_metrics import average_precision, multilabel_metrics, tune_thresholds
from cnntrain.training.multi_label import LabelSetLoss, MultiLabel

from helpers import cli_env, cnntrain_command, dataset_section, run_main
from synthetic_images import write_label_file
from synthetic_labelsets import SHAPES, make_label_sets, write_sets


def label_cfg(file, **overrides):
    base = {
        "name": "labels",
        "kind": "labels",
        "root": ".",
        "file": str(file),
        "val_split": 0.2,
        "val_strategy": "stratified",
        "test_split": 0.2,
        "num_workers": 0,
    }
    return dataset_section({**base, **overrides})


# -- reading label sets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["delimited", "columns", "jsonl"])
def test_every_form_of_label_file_gives_the_same_multi_hot_labels(tmp_path, form):
    file = write_sets(tmp_path, form, count=24)
    overrides = (
        {"label_columns": list(SHAPES)}
        if form == "columns"
        else {"label_delimiter": " "}
        if form == "delimited"
        else {}
    )  # JSON lists need no setting
    description = describe_data(label_cfg(file, **overrides))
    assert description.task == "multilabel" and description.classes == list(SHAPES)
    listing = description.found
    every = listing.train_files
    assert len(every) == 24
    expected = {f"img/{i}.png": tuple((i % 8) >> bit & 1 for bit in range(3)) for i in range(24)}
    assert {path.relative_to(tmp_path).as_posix(): label for path, label in every} == expected
    assert "multi-label: 3 labels from" in listing.layout


def test_the_data_goes_to_the_device_as_float_multi_hot_rows_and_empty_sets_are_kept(tmp_path):
    file = write_sets(tmp_path, "jsonl", count=40)
    bundle = load_data(label_cfg(file), seed=0)
    labels = torch.cat([bundle.train.labels, bundle.val.labels, bundle.test.labels])
    assert labels.dtype == torch.float32 and labels.shape == (40, 3)
    assert int((labels.sum(1) == 0).sum()) == 5, "the 5 images with no shape are valid rows"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (26, 6, 8)


def test_configured_label_names_may_be_given_by_index_and_a_stranger_is_refused(tmp_path):
    rows = [
        {"path": p, "labels": " ".join(str(SHAPES.index(s)) for s in labels)}
        for p, labels in make_label_sets(tmp_path, 16)
    ]
    file = write_label_file(tmp_path / "labels.csv", rows)
    found = describe_data(label_cfg(file, task="multilabel", classes=list(SHAPES)))
    assert found.classes == list(SHAPES) and sorted(label for _, label in found.found.train_files)[-1] == (1, 1, 1)
    write_label_file(file, [*rows[:3], {"path": rows[3]["path"], "labels": "0 triangle"}])
    with pytest.raises(
        DataError,
        match=r"labels\.csv, line 5: label 'triangle' is not in dataset\.classes "
        r"\(circle, cross, square\)",
    ):
        describe_data(label_cfg(file, task="multilabel", classes=list(SHAPES)))


def test_a_label_column_that_is_not_zero_or_one_is_named_by_line(tmp_path):
    rows = [{"path": p, **{s: int(s in labels) for s in SHAPES}} for p, labels in make_label_sets(tmp_path, 8)]
    rows[2]["cross"] = "yes"
    file = write_label_file(tmp_path / "labels.csv", rows)
    with pytest.raises(DataError, match=r"line 4: column 'cross' is \"yes\"; each label column holds 0 or 1"):
        describe_data(label_cfg(file, label_columns=list(SHAPES)))


def test_a_single_label_source_is_not_read_as_label_sets(tmp_path, synthetic_data_root):
    cfg = dataset_section(
        {
            "name": "mnist",
            "kind": "torchvision",
            "torchvision_class": "MNIST",
            "root": str(synthetic_data_root),
            "download": False,
            "task": "multilabel",
            "val_split": 0.1,
            "val_strategy": "random",
        }
    )
    with pytest.raises(DataError, match="dataset.task=multilabel but .* gives one class per image"):
        describe_data(cfg)


# -- splits, folds, sampler ----------------------------------------------------------------------------------------


def skewed_labels(n: int = 300, seed: int = 0) -> torch.Tensor:
    """Label k with probability 0.5 / (k + 1): label 4 is rare (about 1 image in 10)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 5, generator=generator) < torch.tensor([0.5 / (k + 1) for k in range(5)])).float()


def test_iterative_stratification_gives_exact_sizes_and_spreads_every_label():
    labels = skewed_labels()
    parts = stratified_parts(labels, [240, 60], torch.Generator().manual_seed(1))
    assert int((parts == 1).sum()) == 60
    wanted = labels.sum(0) * 0.2
    got = labels[parts == 1].sum(0)
    assert torch.all((got - wanted).abs() <= 1.5), (got, wanted)
    random = labels[torch.randperm(300, generator=torch.Generator().manual_seed(1))[:60]].sum(0)
    assert (got - wanted).abs().sum() < (random - wanted).abs().sum()


def test_multi_label_val_split_and_folds_are_seeded_disjoint_and_cover_the_data():
    labels = skewed_labels(101)
    train_idx, val_idx = split_indices(labels, 0.2, "stratified", seed=3)
    again = split_indices(labels, 0.2, "stratified", seed=3)
    assert torch.equal(val_idx, again[1]) and len(val_idx) == 20
    assert sorted(torch.cat([train_idx, val_idx]).tolist()) == list(range(101))
    folds = [fold_indices(labels, 4, fold, seed=3)[1] for fold in range(4)]
    assert sorted(torch.cat(folds).tolist()) == list(range(101))
    assert sorted(len(f) for f in folds) == sorted(fold_sizes(101, 4)) == [25, 25, 25, 26]


def test_the_balanced_sampler_draws_a_rare_labels_images_more_often():
    labels = skewed_labels(400)
    draws = balanced_draws(labels, torch.Generator().manual_seed(0))
    assert draws.shape == (400,)
    share_drawn = labels[draws, 4].mean()
    assert share_drawn > 1.5 * labels[:, 4].mean()
    assert labels[draws, 0].mean() < labels[:, 0].mean(), "the common label is drawn less than its share"


# -- metrics -------------------------------------------------------------------------------------------------------


def test_average_precision_steps_over_distinct_scores_as_scikit_learn_does():
    # ranked 1 0 1 0: precision 1 at recall 1/2, 2/3 at recall 1
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # a tie of a positive and a negative is one step: precision 1/2 at recall 1/2, then 2/3 at recall 1
    assert average_precision(torch.tensor([0.5, 0.5, 0.2]), torch.tensor([1, 0, 1])) == pytest.approx(7 / 12)
    assert average_precision(torch.tensor([0.3, 0.1]), torch.tensor([0, 0])) is None


def test_the_multilabel_metrics_of_a_small_case_worked_out_by_hand():
    scores = torch.tensor([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1], [0.8, 0.6, 0.3], [0.1, 0.3, 0.2]])
    truth = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    values, per_label = multilabel_metrics(scores, truth, [0.5, 0.5, 0.5], ["a", "b", "c"])
    # predicted: {a, c}, {b}, {a, b}, {}: rows 0 and 1 exact; wrong pairs: (2, b) and (3, c)
    assert values["test/acc"] == 0.5 and values["test/hamming_loss"] == pytest.approx(2 / 12)
    # tp 4 (a twice, b once, c once), fp 1 (b in row 2), fn 1 (c in row 3)
    assert values["test/precision"] == pytest.approx(4 / 5) and values["test/recall"] == pytest.approx(4 / 5)
    assert values["test/micro_f1"] == pytest.approx(0.8)
    assert per_label["b"] == {
        "ap": pytest.approx(1.0),
        "f1": pytest.approx(2 / 3),
        "precision": 0.5,
        "recall": 1.0,
        "support": 1,
        "threshold": 0.5,
    }
    # label c ranks 0.6 (pos), 0.3, 0.2 (pos), 0.1: AP = 1 * 1/2 + 2/3 * 1/2
    assert per_label["c"]["ap"] == pytest.approx(5 / 6)
    assert values["test/map"] == pytest.approx((1 + 1 + 5 / 6) / 3)
    assert values["test/macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_tuned_thresholds_give_each_label_its_best_f1():
    scores = torch.tensor([[0.9, 0.2], [0.35, 0.3], [0.3, 0.9], [0.1, 0.8]])
    truth = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]])
    thresholds = tune_thresholds(scores, truth)
    assert 0.3 < thresholds[0] < 0.35, "label 0: both positives above, the negatives below"
    assert 0.8 < thresholds[1] < 0.9
    values, _ = multilabel_metrics(scores, truth, thresholds, ["x", "y"])
    assert values["test/acc"] == 1.0
    assert tune_thresholds(scores, torch.zeros(4, 2)) == [0.5, 0.5], "no positive: the default stays"


# -- loss and mixing -----------------------------------------------------------------------------------------------


def test_balanced_class_weights_are_negatives_over_positives_per_label(tiny_config):
    labels = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=torch.float32)
    bundle = type(
        "B", (), {"train": type("S", (), {"labels": labels, "__len__": lambda self: 4})(), "classes": ["a", "b"]}
    )()
    cfg = tiny_config("trainer.class_weights=balanced", "trainer.label_smoothing=0.2")
    loss = MultiLabel(0.5, 2).loss(cfg, bundle, torch.device("cpu"))
    assert loss.pos_weight.tolist() == pytest.approx([1 / 3, 3.0])
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    targets = labels[:2]
    expected = F.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1, pos_weight=loss.pos_weight)
    assert torch.equal(loss(logits, targets), expected)
    assert LabelSetLoss()(logits, targets) == F.binary_cross_entropy_with_logits(logits, targets)


def test_mixup_mixes_multi_hot_targets_in_the_images_proportions():
    images = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    _, mixed = mixup(images, targets, 1.0, torch.Generator().manual_seed(0))
    assert mixed.shape == (4, 3) and bool(((mixed >= 0) & (mixed <= 1)).all())
    lam = mixed[0, 0]  # image 0 (labels {0}) mixed with image 3 (no label)
    assert mixed[0].tolist() == pytest.approx([float(lam), 0.0, 0.0])
    assert mixed[1].tolist() == pytest.approx([float(1 - mixed[1, 1]), float(mixed[1, 1]), 0.0])


# -- runs through every command ------------------------------------------------------------------------------------

RUN = (
    "dataset=labels",
    "model=cnn2",
    "trainer.epochs=3",
    "trainer.batch_size=16",
    "trainer.progress=false",
    "report.plots=true",
    "device=cpu",
    "trainer.early_stopping.enabled=false",
)


@pytest.mark.slow
def test_a_multi_label_run_then_eval_predict_and_export(tmp_path, monkeypatch):
    file = write_sets(tmp_path / "data", "delimited", count=96)
    run_dir = tmp_path / "run"
    settings = [
        "dataset.task=multilabel",
        "trainer.threshold=tune",
        "dataset.augment=[mixup]",
        "trainer.sampler=balanced",
        "trainer.class_weights=balanced",
    ]
    result = run_main(
        train.main, [*RUN, f"dataset.file={file}", *settings, f"hydra.run.dir='{run_dir}'"], tmp_path, monkeypatch
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "multilabel" and summary["best"]["monitor"] == "val/map"
    assert set(summary["test"]) >= {"map", "micro_f1", "macro_f1", "precision", "recall", "hamming_loss", "acc"}
    assert set(summary["per_label"]) == set(SHAPES) and summary["per_label"]["cross"]["support"] > 0
    assert list(summary["thresholds"]) == list(SHAPES)
    counts = summary["train_class_counts"]
    assert summary["class_weights"] == pytest.approx(
        [(summary["sizes"]["train"] - counts[s]) / counts[s] for s in SHAPES]
    ), "balanced: negatives / positives per label"
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",val/map")
    for picture in ("per_class.png", "pr_curves.png", "curves.png", "report.html"):
        assert (run_dir / picture).is_file(), picture
    page = (run_dir / "report.html").read_text()
    assert "(multi-label)" in page and "Per label" in page and "confusion" not in page
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
    assert best["thresholds"] == list(summary["thresholds"].values())

    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    for key in ("map", "acc", "micro_f1", "hamming_loss"):
        assert evaluated["test"][key] == summary["test"][key], key  # the same weights, thresholds and test rows

    image = tmp_path / "data" / "img" / "7.png"  # all three shapes
    result = run_main(predict.main, [str(run_dir), str(image), "--json"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert all(item["probability"] >= item["threshold"] for item in record["labels"])
    assert {item["label"] for item in record["top"]} == set(SHAPES)
    run = cnntrain.load(run_dir)  # the Python API gives the same label sets as the command
    assert run.predict(image, top_k=3) == [{key: value for key, value in record.items() if key != "image"}]

    for fmt in ("torchscript", "onnx"):
        out = tmp_path / f"model.{fmt}"
        result = run_main(export.main, [str(run_dir), "--format", fmt, "--output", str(out)], tmp_path, monkeypatch)
        assert result.returncode == 0, result.stderr
        contract = json.loads(out.with_name(out.name + ".json").read_text())["output"]
        assert contract["kind"] == "probabilities" and contract["labels"] == list(SHAPES)
        assert list(contract["thresholds"].values()) == best["thresholds"]
    result = run_main(reproduce.main, [str(run_dir), "--out", str(tmp_path / "again")], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    for compared in ("test.map", "epoch 3 val/map", "values are identical"):
        assert compared in result.stdout, compared
    scripted = torch.jit.load(str(tmp_path / "model.torchscript"))
    probabilities = scripted(torch.rand(2, 1, 16, 16))
    assert probabilities.shape == (2, 3) and bool(((probabilities >= 0) & (probabilities <= 1)).all())
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)  # one wrapper: the export's head is the task's
    assert torch.allclose(run.model().probabilities(images), scripted(images), atol=1e-6)


@pytest.mark.slow
def test_a_two_rank_run_has_the_metrics_of_one_process_evaluating_its_checkpoint(tmp_path, monkeypatch):
    """Scores are gathered from the ranks and the metrics computed once. The 2-rank test pass and a one-process
    cnntrain-eval score the same images with the same weights in different batches: float32 rounding may move a
    score in its last bits, so the metrics must agree to 1e-6 and the loss (float32 batch means summed in float64
    in a different grouping) to a relative 1e-5. The learning rate is tiny so the scores are spread, not saturated."""
    file = write_sets(tmp_path / "data", "jsonl", count=64)
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            *cnntrain_command(),
            *RUN,
            "report.plots=false",
            f"dataset.file={file}",
            "trainer.devices=2",
            "optimizer.lr=1e-5",
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
    assert summary["parallel"]["world_size"] == 2
    assert 0 < summary["test"]["map"] < 1, "a barely trained model: scores spread, no metric pinned at its bound"
    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())["test"]
    for key in ("map", "acc", "micro_f1", "macro_f1", "hamming_loss"):
        assert math.isclose(evaluated[key], summary["test"][key], abs_tol=1e-6), key
    assert math.isclose(evaluated["loss"], summary["test"]["loss"], rel_tol=1e-5)


def test_a_hugging_face_sequence_of_class_labels_gives_label_sets(tmp_path):
    import datasets
    from PIL import Image

    drawn = make_label_sets(tmp_path, 24)
    features = datasets.Features(
        {"image": datasets.Image(), "tags": datasets.Sequence(datasets.ClassLabel(names=list(SHAPES)))}
    )
    table = datasets.Dataset.from_dict(
        {
            "image": [Image.open(tmp_path / p) for p, _ in drawn],
            "tags": [[SHAPES.index(s) for s in labels] for _, labels in drawn],
        },
        features=features,
    )
    datasets.DatasetDict({"train": table}).save_to_disk(str(tmp_path / "hf"))
    cfg = dataset_section(
        {
            "name": "hf",
            "kind": "huggingface",
            "root": ".",
            "path": str(tmp_path / "hf"),
            "val_split": 0.25,
            "val_strategy": "stratified",
            "test_split": 0.25,
            "num_workers": 0,
        }
    )
    bundle = load_data(cfg, seed=0)
    assert bundle.description.task == "multilabel" and bundle.classes == list(SHAPES)
    labels = torch.cat([bundle.train.labels, bundle.val.labels, bundle.test.labels])
    assert labels.shape == (24, 3) and labels.sum(0).tolist() == [12.0, 12.0, 12.0]
    assert "Sequence(ClassLabel)" in bundle.layout


@pytest.mark.slow
def test_a_stopped_multi_label_run_resumes_to_the_same_metrics_and_thresholds(tmp_path, monkeypatch):
    from cnntrain.reporting.run_dir import read_metrics
    from cnntrain.training.run import resume_run, run

    from helpers import compose_config, run_stopped_in_epoch

    file = write_sets(tmp_path / "data", "columns", count=48)
    columns = f"dataset.label_columns=[{','.join(SHAPES)}]"
    settings = (
        "dataset=labels",
        f"dataset.file={file}",
        columns,
        "model=cnn2",
        "trainer.epochs=3",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "report.plots=false",
        "report.html=false",
        "trainer.threshold=tune",
        "threads=1",
        "trainer.early_stopping.enabled=false",
    )
    cfg = lambda: compose_config(*settings)
    run(cfg(), tmp_path / "reference")
    run_stopped_in_epoch(cfg(), tmp_path / "stopped", 2, monkeypatch)
    resume_run(tmp_path / "stopped")
    rows = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in read_metrics(tmp_path / name / "metrics.csv")]
        for name in ("reference", "stopped")
    ]
    assert rows[0] == rows[1] and "val/map" in rows[0][0]
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("reference", "stopped")]
    assert summaries[0]["test"] == summaries[1]["test"]
    assert summaries[0]["thresholds"] == summaries[1]["thresholds"]


def test_a_multi_label_job_fills_the_sweep_summary_and_compare_columns(tmp_path):
    from cnntrain.commands.compare import Run, compare_rows
    from cnntrain.reporting.sweep_rows import CSV_FIELDS, read_job

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- trainer.threshold=tune\n")
    test = {
        "loss": 0.3,
        "acc": 0.4,
        "map": 0.81,
        "micro_f1": 0.7,
        "macro_f1": 0.69,
        "precision": 0.8,
        "recall": 0.6,
        "hamming_loss": 0.1,
    }
    summary = {
        "status": "done",
        "best": {"monitor": "val/map", "mode": "max", "value": 0.79, "epoch": 3},
        "final_epoch": {"val/loss": 0.31, "val/acc": 0.35, "val/map": 0.79},
        "test": test,
        "elapsed_seconds": 1.0,
        "epochs_run": 3,
    }
    (job / "summary.json").write_text(json.dumps(summary))
    row = read_job(job)
    assert row.status == "done" and row.mode == "max"
    assert {name: row.values[name] for name in ("test/map", "test/hamming_loss", "test/micro_f1")} == {
        "test/map": 0.81,
        "test/hamming_loss": 0.1,
        "test/micro_f1": 0.7,
    }
    assert "test/map" in CSV_FIELDS and row.values["test/balanced_acc"] is None
    headers, rows = compare_rows([Run(job, "0", "done", [], summary, {})], [])
    assert headers[:4] == ["run", "status", "test/acc", "test/map"] and rows[0][3] == "0.8100"


@pytest.mark.slow
def test_webdataset_shards_of_label_sets_train_and_evaluate(tmp_path, monkeypatch):
    import webdataset as wds

    from synthetic_labelsets import draw_set

    folder = tmp_path / "shards"
    folder.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    for split, count in (("train", 64), ("test", 16)):
        with wds.ShardWriter(str(folder / f"{split}-%06d.tar"), maxcount=32, verbose=0) as sink:
            for i in range(count):
                present = [bool((i % 8) >> bit & 1) for bit in range(3)]
                image = draw_set(present, 16, rng)
                entry = (
                    " ".join(name for name, on in zip(SHAPES, present) if on)
                    if i % 2
                    else json.dumps([k for k, on in enumerate(present) if on])
                )  # names split by ' ', or a JSON list
                sink.write({"__key__": f"{split}-{i:04d}", "png": image_bytes(image), "cls": entry})
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in SHAPES))
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        [
            "dataset=webdataset",
            f"dataset.train='{folder}/train-{{000000..000001}}.tar'",
            f"dataset.test='{folder}/test-000000.tar'",
            "dataset.task=multilabel",
            "dataset.num_workers=0",
            *RUN[1:],
            "report.plots=false",
            f"hydra.run.dir='{run_dir}'",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "multilabel" and summary["sizes"]["test"] == 16
    assert "multi-label: 3 labels" in summary["data"]["layout"]
    assert sum(m["support"] for m in summary["per_label"].values()) == 24  # 16 test images, 8 of each set
    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["map"] == summary["test"]["map"]


def image_bytes(image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_shard_label_entry_is_read_as_a_set_and_a_bad_one_is_named():
    from cnntrain.data.sources.webdataset_shards import parse_label

    classes = list(SHAPES)
    assert parse_label(b"square circle", classes, "s", " ") == (1, 0, 1)
    assert parse_label(b"[1, 2]", classes, "s", " ") == (0, 1, 1)
    assert parse_label(b"", classes, "s", " ") == (0, 0, 0), "no label is a valid sample"
    with pytest.raises(DataError, match=r"shard a\.tar, sample 7: label entry '\[1, 2' is not a JSON list"):
        parse_label(b"[1, 2", classes, "shard a.tar, sample 7", " ")
    with pytest.raises(DataError, match="label 'triangle' is neither a class index nor a class name"):
        parse_label(b"circle triangle", classes, "s", " ")


def test_label_names_from_the_data_are_shown_as_text_in_the_multi_label_tables():
    """A label named like rich markup or holding an escape sequence prints as written (escaped), never styles,
    crashes or reaches the terminal raw: the per-label table and cnntrain-predict's table."""
    from io import StringIO
    from pathlib import Path

    from rich.console import Console

    from cnntrain.reporting.label_report import per_label_table

    name = "[/bold]cat\x1b[31m"
    metrics = {"support": 3, "ap": 0.5, "f1": 0.4, "precision": 0.5, "recall": 0.3, "threshold": 0.5}
    record = {"labels": [{"label": name, "probability": 0.9, "threshold": 0.5, "predicted": True}], "top": []}
    for table in (per_label_table({name: metrics}), predict.sets_table(Path("[red]x.png"), record)):
        out = StringIO()
        Console(file=out, width=200, color_system=None).print(table)
        assert "[/bold]cat\\x1b[31m" in out.getvalue() and "\x1b" not in out.getvalue()
    assert "[red]x.png" in out.getvalue()
