"""The names cnntrain knows: metrics, and the allowed values of every choice key.

Each tuple here is the only spelling of its names: the schema checks against it, the console, the
CSV, the loggers and the saved runs all read it. Nothing here imports torch.
"""

from __future__ import annotations

EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
"""Measured once per epoch; any of them can be monitored (checkpoint, early stopping, plateau)."""
SCALARS = (*EPOCH_METRICS, "lr")
"""What a logger records per epoch."""
EPOCH_COLUMNS = ("epoch", *SCALARS, "seconds")
"""A row of metrics.csv and of the epoch table, in order."""
STEP_LOSS = "train/loss_step"
STEP_COLUMNS = ("step", "epoch", STEP_LOSS, "lr")
"""A row of steps.csv: the global optimizer step (from 1), the fractional epoch it ends, its batch's training
loss and the learning rate it used. Loggers get the same names."""
TEST_METRICS = ("test/acc", "test/loss")

MODES = ("min", "max")
LOSSES = ("auto", "cross_entropy", "nll")
PRECISIONS = ("fp32", "bf16", "fp16")
TTA_MODES = ("none", "hflip")
LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")
"""`logger` takes one of these or a list of them; csv (metrics.csv) is written either way."""
WANDB_MODES = ("offline", "online")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DATASET_KINDS = ("torchvision", "imagefolder")
VAL_STRATEGIES = ("random", "stratified")
ANNEAL_STRATEGIES = ("cos", "linear")
CHECKPOINT_NAMES = ("best", "last")
CONFIG_GROUPS = ("dataset", "model", "optimizer", "scheduler", "experiment", "hparams_search")
