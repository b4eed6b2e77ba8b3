"""The names cnntrain knows: metrics, and the allowed values of every choice key.

Each tuple here is the only spelling of its names: the schema checks against it, the console, the
CSV, the loggers and the saved runs all read it. Nothing here imports torch.
"""

from __future__ import annotations

EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
"""Measured once per epoch; any of them can be monitored (checkpoint, early stopping, plateau)."""
VAL_MAP = "val/map"
TASK_EPOCH_METRICS = (VAL_MAP,)
"""Measured once per epoch in multi-label runs only (mean average precision over the labels, on val)."""
MONITORS = (*EPOCH_METRICS, *TASK_EPOCH_METRICS)
"""What checkpoint.monitor, early_stopping.monitor and the plateau schedule may watch."""
SCALARS = (*EPOCH_METRICS, "lr")
"""What a logger records per epoch."""
EPOCH_COLUMNS = ("epoch", *SCALARS, "seconds")
"""A row of metrics.csv and of the epoch table, in order."""


def epoch_columns(task: str | None) -> tuple[str, ...]:
    """The columns of metrics.csv and of the epoch table for a dataset.task (multi-label runs add val/map)."""
    return (*EPOCH_COLUMNS, *TASK_EPOCH_METRICS) if task == TASK_MULTILABEL else EPOCH_COLUMNS


def label_set_monitor(monitor: str, mode: str) -> tuple[str, str]:
    """The (monitor, mode) of a multi-label run's best checkpoint: val/map unless a monitor other than the default
    val/acc (exact match, in a multi-label run) was set."""
    return (VAL_MAP, "max") if monitor == "val/acc" else (monitor, mode)


STEP_LOSS = "train/loss_step"
STEP_COLUMNS = ("step", "epoch", STEP_LOSS, "lr")
"""A row of steps.csv: the global optimizer step (from 1), the fractional epoch it ends, its batch's training
loss and the learning rate it used. Loggers get the same names."""
TEST_METRICS = ("test/acc", "test/loss")
TEST_BALANCED_ACC = "test/balanced_acc"
"""Mean per-class recall over the classes present in the test labels: accuracy that a large class cannot carry."""
TEST_MACRO_F1 = "test/macro_f1"
"""Unweighted mean of each class's F1 over the classes in the test labels or the predictions."""
TEST_ACC5 = "test/acc5"
"""A hit when the true class is among the five highest scores; measured when there are TOP5_MIN_CLASSES or more."""
TOP5_MIN_CLASSES = 20
CLASS_METRICS = (TEST_BALANCED_ACC, TEST_MACRO_F1, TEST_ACC5)
"""Test metrics beside TEST_METRICS, for the best and the last weights (acc5 only with 20+ classes)."""
TEST_MAP = "test/map"
"""Multi-label: mean over the labels (that have a positive test image) of each label's average precision."""
LABEL_METRICS = (TEST_MAP, "test/micro_f1", TEST_MACRO_F1, "test/precision", "test/recall", "test/hamming_loss")
"""Multi-label test metrics beside TEST_METRICS (test/acc being exact-match accuracy: the whole set right). F1,
precision (micro), recall (micro) and the Hamming loss (the share of wrong image-label pairs) are at the decision
thresholds; mAP is threshold-free."""


def summary_key(metric: str) -> str:
    """A test metric's key inside summary.json's "test" and "test_last" objects: its name after "test/"."""
    return metric.split("/", 1)[1]


MODES = ("min", "max")
LOSSES = ("auto", "cross_entropy", "nll")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # auto: cnntrain.device.auto_precision decides
TTA_MODES = ("none", "hflip")
DECODE_DEVICES = ("cpu", "cuda")  # dataset.decode_device: where streamed JPEGs are decoded (cnntrain.data.batch_decode)
RESIZE_MODES = ("stretch", "crop", "pad")  # dataset.resize: how an image meets the input size (cnntrain.data.images)
LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
"""`logger` takes one of these or a list of them; csv (metrics.csv) is written either way."""
WANDB_MODES = ("offline", "online")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DATASET_KINDS = ("torchvision", "imagefolder", "labels", "huggingface", "webdataset")
VAL_STRATEGIES = ("random", "stratified")
TASK_SINGLE = "single"
TASK_MULTILABEL = "multilabel"
TASKS = (TASK_SINGLE, TASK_MULTILABEL)
"""dataset.task: one class per image (softmax), or a set of labels per image (a sigmoid per label). The run asks
its task object (cnntrain.training.tasks) what differs; these names are for configs, descriptions and files."""
THRESHOLD_TUNE = "tune"
"""trainer.threshold=tune: each label's decision threshold is the one with the best F1 on the validation split."""
SAMPLERS = ("shuffle", "balanced")
"""trainer.sampler: a seeded permutation per epoch, or len(train) draws with replacement, each class equally likely."""
BALANCED = "balanced"
"""trainer.class_weights=balanced: n_train / (classes x the class's training images)."""
ANNEAL_STRATEGIES = ("cos", "linear")
CHECKPOINT_NAMES = ("best", "last")
CONFIG_GROUPS = ("dataset", "model", "optimizer", "scheduler", "experiment", "hparams_search")
