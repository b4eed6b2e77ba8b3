"""Class imbalance and small data: class weights in the loss, the balanced sampler, balanced accuracy / macro-F1 /
top-5 accuracy, and K-fold cross-validation, each shown to act on the real code paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnntrain.config.names import SAMPLERS, TEST_ACC5, TEST_BALANCED_ACC, TEST_MACRO_F1
from cnntrain.data.balance import balanced_draws, class_counts, class_weights, train_class_weights
from cnntrain.data.batches import epoch_order
from cnntrain.data.containers import TensorSplit, iterate_batches
from cnntrain.data.loading import load_data, train_labels
from cnntrain.data.split import fold_indices
from cnntrain.errors import ConfigError, DataError
from cnntrain.reporting.metrics import balanced_accuracy, class_metrics, macro_f1, top_k_hits
from cnntrain.training.single_label import make_loss
from cnntrain.training.weighted_loss import ClassWeightedLoss

from helpers import TINY_RUN, compose_config, run_main
from synthetic_idx import write_idx_dataset, write_idx_images, write_idx_labels

IMBALANCED = torch.cat([torch.zeros(1000, dtype=torch.int64), torch.arange(1, 5).repeat_interleave(100)])
"""Class 0 has 10x the images of each of classes 1-4."""


def write_imbalanced(root: Path, majority: int = 600, minority: int = 60) -> Path:
    """The synthetic MNIST of the other tests with class 0 ten times as frequent in train (test stays balanced)."""
    raw = write_idx_dataset(root, "MNIST", n_train=10 * majority, n_test=300, seed=0)
    images = np.fromfile(raw / "train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(raw / "train-labels-idx1-ubyte", dtype=np.uint8, offset=8)
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[: majority if c == 0 else minority] for c in range(10)]))
    write_idx_images(raw / "train-images-idx3-ubyte", images[keep])
    write_idx_labels(raw / "train-labels-idx1-ubyte", labels[keep])
    return root


# ---------------------------------------------------------------- metrics on hand-made numbers


def test_balanced_accuracy_and_macro_f1_on_a_hand_made_confusion_matrix():
    # rows: true class, columns: predicted. Class 2 never occurs in the labels but is predicted once.
    matrix = torch.tensor([[8, 2, 0], [1, 2, 1], [0, 0, 0]])
    # recalls 8/10 and 2/4 over the two classes present; class 2 has no recall
    assert balanced_accuracy(matrix) == pytest.approx((0.8 + 0.5) / 2)
    # F1 = 2TP / (2TP + FP + FN): class 0: 16 / (16 + 1 + 2); class 1: 4 / (4 + 2 + 2); class 2: 0 / (0 + 1 + 0)
    assert macro_f1(matrix) == pytest.approx((16 / 19 + 4 / 8 + 0.0) / 3)
    perfect = torch.diag(torch.tensor([5, 1, 3]))
    assert balanced_accuracy(perfect) == macro_f1(perfect) == 1.0
    always_zero = torch.tensor([[10, 0], [0, 0]]) + torch.tensor([[0, 0], [4, 0]])  # predicts class 0 every time
    assert balanced_accuracy(always_zero) == 0.5  # plain accuracy is 10/14
    assert macro_f1(always_zero) == pytest.approx((20 / 24 + 0.0) / 2)


def test_top5_hits_on_hand_made_logits():
    logits = torch.arange(25, dtype=torch.float32).repeat(3, 1)  # class 24 scores highest, then 23, ...
    labels = torch.tensor([24, 20, 19])  # ranks 1, 5 and 6
    assert int(top_k_hits(logits, labels, 5)) == 2
    assert int(top_k_hits(logits, labels, 1)) == 1
    metrics = class_metrics(torch.eye(3, dtype=torch.int64), acc5=2 / 3)
    assert metrics == {TEST_BALANCED_ACC: 1.0, TEST_MACRO_F1: 1.0, TEST_ACC5: 2 / 3}
    assert TEST_ACC5 not in class_metrics(torch.eye(3, dtype=torch.int64), acc5=None)


# ---------------------------------------------------------------- class weights and the loss


def test_balanced_weights_are_n_over_classes_times_count_with_mean_one():
    counts = class_counts(IMBALANCED, 5)
    weights = class_weights("balanced", counts, list("abcde"))
    assert weights == pytest.approx([1400 / (5 * 1000)] + [1400 / (5 * 100)] * 4)
    assert torch.tensor(weights)[IMBALANCED].mean().item() == pytest.approx(1.0)
    assert class_weights([1, 0, 2, 2, 2], counts, list("abcde")) == [1.0, 0.0, 2.0, 2.0, 2.0]
    assert class_weights(None, counts, list("abcde")) is None
    with pytest.raises(ConfigError, match=r"trainer.class_weights=\[1, 2\]: 2 weight\(s\), but the dataset has 5"):
        class_weights([1, 2], counts, list("abcde"))


@pytest.mark.parametrize("setting", ["trainer.class_weights", "trainer.sampler"])
def test_balanced_settings_refuse_a_class_without_training_images(setting):
    from omegaconf import OmegaConf

    trainer = OmegaConf.create({"class_weights": None, "sampler": "shuffle", setting.split(".")[1]: "balanced"})
    labels = torch.tensor([0, 0, 2, 2])
    with pytest.raises(DataError, match=f"class 'cross' has no images in the training split, and {setting}=balanced"):
        train_class_weights(trainer, labels, ["circle", "cross", "square"])
    unbalanced = OmegaConf.create({"class_weights": None, "sampler": "shuffle"})
    assert train_class_weights(unbalanced, labels, ["circle", "cross", "square"]) is None


@pytest.mark.parametrize(("kind", "smoothing"), [("cross_entropy", 0.0), ("cross_entropy", 0.1), ("nll", 0.0)])
def test_weighted_loss_is_each_images_loss_times_its_class_weight(kind, smoothing):
    torch.manual_seed(0)
    scores = torch.randn(6, 3)
    scores = scores.log_softmax(dim=1) if kind == "nll" else scores
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    plain = nn.NLLLoss() if kind == "nll" else nn.CrossEntropyLoss(label_smoothing=smoothing)
    assert torch.allclose(ClassWeightedLoss(kind, torch.ones(3), smoothing)(scores, labels), plain(scores, labels))
    weight = torch.tensor([0.5, 2.0, 0.0])
    each = (
        nn.NLLLoss(reduction="none")
        if kind == "nll"
        else nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing)
    )(scores, labels)
    expected = (each * weight[labels]).mean()
    assert torch.allclose(ClassWeightedLoss(kind, weight, smoothing)(scores, labels), expected)


def test_default_loss_is_torchs_own(tiny_config):
    """trainer.class_weights=null builds exactly the loss of before: runs stay bit-identical."""
    loss = make_loss(tiny_config("trainer.label_smoothing=0.1"))
    assert type(loss) is nn.CrossEntropyLoss and loss.label_smoothing == 0.1 and loss.weight is None
    weighted = make_loss(tiny_config(), [1.0] * 10)
    assert isinstance(weighted, ClassWeightedLoss) and weighted.weight.tolist() == [1.0] * 10


# ---------------------------------------------------------------- the balanced sampler


def test_default_order_is_the_permutation_of_before():
    labels = IMBALANCED
    assert SAMPLERS[0] == "shuffle"
    drawn = epoch_order(labels, "shuffle", torch.Generator().manual_seed(5))
    assert torch.equal(drawn, torch.randperm(len(labels), generator=torch.Generator().manual_seed(5)))


def test_balanced_sampler_draws_classes_uniformly_and_reproducibly():
    generator = torch.Generator().manual_seed(0)
    epochs = [epoch_order(IMBALANCED, "balanced", generator) for _ in range(5)]
    drawn = torch.cat(epochs)
    assert all(len(order) == len(IMBALANCED) for order in epochs)
    frequencies = class_counts(IMBALANCED[drawn], 5).double() / len(drawn)
    assert torch.allclose(frequencies, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015)
    shuffled = class_counts(IMBALANCED[epoch_order(IMBALANCED, "shuffle", generator)], 5)
    assert shuffled.tolist() == [1000, 100, 100, 100, 100]  # shuffling keeps the imbalance
    again = torch.Generator().manual_seed(0)
    assert all(torch.equal(order, epoch_order(IMBALANCED, "balanced", again)) for order in epochs)
    assert not torch.equal(epochs[0], epoch_order(IMBALANCED, "balanced", torch.Generator().manual_seed(1)))


def test_balanced_sampler_resumes_from_the_generator_state():
    """A resumed run restores the shuffle generator's state (progress.rng_state), and the next epoch's draws follow."""
    generator = torch.Generator().manual_seed(3)
    epoch_order(IMBALANCED, "balanced", generator)
    saved = generator.get_state()
    second = epoch_order(IMBALANCED, "balanced", generator)
    resumed = torch.Generator()
    resumed.set_state(saved)
    assert torch.equal(epoch_order(IMBALANCED, "balanced", resumed), second)


def test_balanced_sampler_ranks_share_one_order():
    """Every rank draws the same order and takes its contiguous share, so the ranks together see the batches
    one process sees."""
    split = TensorSplit(torch.arange(len(IMBALANCED)).view(-1, 1, 1, 1), IMBALANCED)

    def batches(rank: int, world: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(7)
        return [
            images.view(-1)
            for images, _ in iterate_batches(
                split, 64, shuffle=True, generator=generator, rank=rank, world=world, sampler="balanced"
            )
        ]

    single = batches(0, 1)
    shares = zip(batches(0, 2), batches(1, 2))
    assert all(torch.equal(torch.cat(pair), whole) for pair, whole in zip(shares, single))
    assert len(single) == -(-len(IMBALANCED) // 64)


def test_balanced_draws_only_images_of_present_classes():
    labels = torch.tensor([3, 3, 3, 7])
    drawn = balanced_draws(labels, torch.Generator().manual_seed(0))
    assert len(drawn) == 4 and set(drawn.tolist()) <= {0, 1, 2, 3}


def test_streamed_folder_draws_the_balanced_order_of_the_in_memory_path(tmp_path):
    from test_image_folder import folder_cfg

    from synthetic_images import make_folder

    root = make_folder(tmp_path / "folder", rgb=False, size=12, per_class=8)
    memory = load_data(folder_cfg(root), seed=0)
    streamed = load_data(folder_cfg(root, in_memory=False, num_workers=0), seed=0)
    for rank in (0, 1):
        a = list(
            iterate_batches(
                memory.train,
                5,
                shuffle=True,
                generator=torch.Generator().manual_seed(2),
                rank=rank,
                world=2,
                sampler="balanced",
            )
        )
        b = list(
            iterate_batches(
                streamed.train,
                5,
                shuffle=True,
                generator=torch.Generator().manual_seed(2),
                rank=rank,
                world=2,
                sampler="balanced",
            )
        )
        assert len(a) == len(b) > 0
        for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
            assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


# ---------------------------------------------------------------- k-fold cross-validation


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_are_disjoint_stratified_seeded_and_cover_the_training_set(folds):
    labels = IMBALANCED[torch.randperm(len(IMBALANCED), generator=torch.Generator().manual_seed(0))]
    vals = []
    for fold in range(folds):
        train, val = fold_indices(labels, folds, fold, seed=11)
        assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(labels)))
        vals.append(val)
        same_train, same_val = fold_indices(labels, folds, fold, seed=11)
        assert torch.equal(same_val, val) and torch.equal(same_train, train)
    everything = torch.cat(vals)
    assert len(everything) == len(labels) and len(everything.unique()) == len(labels)  # disjoint, covering
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    per_fold = torch.stack([class_counts(labels[v], 5) for v in vals])  # [fold, class]
    assert (per_fold.max(dim=0).values - per_fold.min(dim=0).values).max() <= 1  # each class spread evenly
    assert not torch.equal(fold_indices(labels, folds, 0, seed=12)[1], vals[0])


def test_a_fold_replaces_the_validation_split(synthetic_data_root):
    from test_data import dataset_cfg

    bundle = load_data(dataset_cfg(synthetic_data_root, folds=4, fold=1, val_split=0.5), seed=0)
    assert (len(bundle.train), len(bundle.val)) == (900, 300)
    assert class_counts(bundle.val.labels, 10).tolist() == [30] * 10
    cfg = dataset_cfg(synthetic_data_root, folds=4, fold=1)
    assert torch.equal(train_labels(cfg, 0), bundle.train.labels)
    with pytest.raises(DataError, match="dataset.folds=2000 is more than the 1200 training images"):
        fold_indices(torch.zeros(1200, dtype=torch.int64), 2000, 0, seed=0)


# ---------------------------------------------------------------- end to end


def imbalance_run(root: Path, run_dir: Path, *overrides: str) -> dict:
    from cnntrain.training.run import run

    cfg = compose_config(
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=false",
        "threads=1",
        *overrides,
        data_root=root,
    )
    run(cfg, run_dir)
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_balancing_an_imbalanced_set_raises_balanced_accuracy(tmp_path):
    root = write_imbalanced(tmp_path / "data")
    plain = imbalance_run(root, tmp_path / "plain")
    weighted = imbalance_run(root, tmp_path / "weighted", "trainer.class_weights=balanced")
    sampled = imbalance_run(root, tmp_path / "sampled", "trainer.sampler=balanced")
    counts = plain["train_class_counts"]
    assert counts["0"] > 8 * counts["1"] and plain["class_weights"] is None and plain["sampler"] == "shuffle"
    assert weighted["class_weights"][0] < 0.3 < 1.5 < weighted["class_weights"][1]
    for balanced in (weighted, sampled):
        # measured here: 26% unbalanced against 85% (weights) and 90% (sampler) after one epoch
        assert balanced["test"]["balanced_acc"] > plain["test"]["balanced_acc"] + 0.1, (plain, balanced)
        assert balanced["test"]["macro_f1"] > plain["test"]["macro_f1"]
    for summary in (plain, weighted, sampled):
        for block in ("test", "test_last"):
            assert set(summary[block]) == {"loss", "acc", "balanced_acc", "macro_f1", "weights"}  # 10 classes: no acc5


@pytest.mark.slow
def test_a_three_fold_sweep_reports_mean_and_std_per_configuration(tmp_path, monkeypatch, small_data_root):
    from cnntrain.commands import train

    result = run_main(
        train.main,
        [
            "-m",
            *TINY_RUN,
            "trainer.epochs=1",
            "trainer.progress=false",
            "threads=1",
            "report.plots=false",
            "dataset.folds=3",
            "dataset.fold=0,1,2",
            "hydra.sweep.dir=cv",
        ],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(small_data_root),
    )
    assert result.returncode == 0, result.stderr
    summaries = [json.loads((tmp_path / "cv" / str(job) / "summary.json").read_text()) for job in range(3)]
    assert [s["sizes"]["val"] for s in summaries] == [100, 100, 100]  # 300 training images in 3 folds
    assert [s["cross_validation"] for s in summaries] == [{"folds": 3, "fold": i} for i in range(3)]
    with (tmp_path / "cv" / "sweep_folds.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    best = np.array([s["best"]["value"] for s in summaries])
    test_acc = np.array([s["test"]["acc"] for s in summaries])
    overrides = row["overrides"].split()
    assert "dataset.folds=3" in overrides and "model=cnn2" in overrides
    assert not any(o.startswith("dataset.fold=") for o in overrides), "the configuration is everything but the fold"
    assert (row["folds_done"], row["folds_failed"], row["monitor"], row["jobs"]) == ("3", "0", "val/acc", "0 1 2")
    assert float(row["best_mean"]) == pytest.approx(best.mean())
    assert float(row["best_std"]) == pytest.approx(best.std(ddof=1))
    assert float(row["test/acc_mean"]) == pytest.approx(test_acc.mean())
    assert float(row["test/acc_std"]) == pytest.approx(test_acc.std(ddof=1))
    assert "cross-validation: mean ± std over folds" in result.stdout and "±" in result.stdout
    with (tmp_path / "cv" / "sweep_summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["test/balanced_acc"]) > 0 and float(r["test/macro_f1"]) > 0 for r in rows)
    assert all(r["test/acc5"] == "" for r in rows)


def test_the_test_pass_measures_top5_with_twenty_or_more_classes():
    from cnntrain.data.description import DataDescription
    from cnntrain.data.loading import DataBundle
    from cnntrain.training.evaluation import test

    torch.manual_seed(0)
    for classes, expect_acc5 in ((25, True), (19, False)):
        images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
        split = TensorSplit(images, torch.randint(0, classes, (50,)))
        bundle = DataBundle(
            split,
            split,
            split,
            DataDescription((1, 4, 4), [str(i) for i in range(classes)]),
            torch.zeros(1, 1, 1, 1),
            torch.ones(1, 1, 1, 1),
        )
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))
        result, _ = test(model, bundle, nn.CrossEntropyLoss(), 16)
        if expect_acc5:
            logits = model(bundle.normalize(images))  # what the test pass feeds the model
            expected = (logits.topk(5, dim=1).indices == split.labels[:, None]).any(dim=1).double().mean().item()
            assert result.acc5 == pytest.approx(expected)
        else:
            assert result.acc5 is None


def test_class_weights_mix_with_soft_targets():
    """MixUp/CutMix targets: an image's weight is its two classes' weights in the mixed proportions."""
    weight = torch.tensor([1.0, 3.0])
    loss = ClassWeightedLoss("cross_entropy", weight)
    scores = torch.tensor([[2.0, 0.5]])
    soft = torch.tensor([[0.25, 0.75]])
    expected = torch.nn.functional.cross_entropy(scores, soft) * (0.25 * 1.0 + 0.75 * 3.0)
    assert torch.allclose(loss(scores, soft), expected)
    hard = loss(scores, torch.tensor([1]))
    assert torch.allclose(hard, torch.nn.functional.cross_entropy(scores, torch.tensor([1])) * 3.0)
