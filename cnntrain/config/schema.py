"""The shape of a cnntrain config: typed dataclasses that OmegaConf merges the composed YAML onto.

Unknown keys and values of the wrong type fail in that merge (cnntrain.config.validate turns the failure
into one sentence). The optimizer and scheduler entries are built from their declaration
(cnntrain.config.optimizers) and their YAML defaults, so no argument is written twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING, OmegaConf

from cnntrain.config.compose import config_dir
from cnntrain.config.optimizers import GROUPS


@functools.cache
def variant_schema(group: str, name: str) -> type:
    """The dataclass of one optimizer or scheduler: its declared arguments, defaulting to its YAML file's values."""
    declared = GROUPS[group][name]
    path = config_dir() / group / f"{name}.yaml"
    defaults = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    fields: list[Any] = [("name", str, field(default=name))]
    for key, arg in declared.args.items():
        default = defaults.get(key, MISSING)
        if isinstance(default, list):
            fields.append((key, arg.type, field(default_factory=lambda value=default: list(value))))
        else:
            fields.append((key, arg.type, field(default=default)))
    return make_dataclass(f"{group}_{name}", fields)


@dataclass
class DatasetConfig:
    name: str
    root: str
    kind: str = "torchvision"  # torchvision (a dataset class by name) | imagefolder (root/train/<class>/...)
    # | labels (a CSV/TSV/JSON Lines file of image paths and labels)
    # | huggingface (a Hugging Face dataset: dataset.path)
    # | webdataset (tar shards, streamed)
    torchvision_class: str = ""
    split: str | None = None  # EMNIST's split argument
    # huggingface: a save_to_disk folder, a folder of Parquet/Arrow files, or a Hub name (user/name) in the local cache
    path: str | None = None
    image_column: str | None = None  # huggingface: the column of images; null: the Image feature column
    # null: taken from the data (always the case for an image folder); stated: checked against the data
    input_shape: list[int] | None = None
    num_classes: int | None = None
    classes: list[str] | None = None
    mean: list[float] | None = None  # null: computed from the training split
    std: list[float] | None = None
    # image files (imagefolder, labels, huggingface, webdataset)
    image_size: list[int] | None = None  # [height, width] to resize to (null: the first image's)
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); null: the first image's
    test_split: float = 0.2  # a source without a test split: the share of train held out (stratified)
    in_memory: bool = True  # decode once into tensors (cached); false: DataLoader workers decode per batch
    num_workers: int = 2  # decoding processes (the cache build, or the streamed batches); 0: in-process
    resize: str = "stretch"  # image files: stretch (ignore the aspect ratio) | crop (cover, centre crop) | pad (fit)
    skip_bad_images: bool = False  # image files: leave undecodable files out (listed in bad_images.txt), not stop
    cache_dir: str | None = None  # where decoded caches and shard indexes go; null: ~/.cache/cnntrain
    download: bool = True
    # labels: the label file (.csv, .tsv, .jsonl, .ndjson); image paths in it are relative to its folder
    file: str | None = None
    image_dir: str | None = None  # labels: the folder relative image paths are read from; null: the label file's
    path_column: str | None = None  # labels: null: the first of path, image, file, filename, filepath, image_path
    # labels: null: the first of label, class, target, category, labels; huggingface: null: the ClassLabel column
    # (else one named label, labels or target)
    label_column: str | None = None
    split_column: str | None = None  # labels: null: `split` when the file has it (train, val, test on every row)
    task: str | None = None  # single | multilabel (a set of labels per image); null: found from the data
    label_delimiter: str | None = None  # labels: the label column holds several labels split by this (multi-label)
    label_columns: list[str] | None = None  # labels: one 0/1 column per label (multi-label); they name the labels
    val_split: Any = 0.1  # a fraction in (0, 1) or a count of images; checked below
    val_strategy: str = "random"
    folds: int | None = None  # K >= 2: K-fold cross-validation (stratified, seeded); val_split is then not used
    fold: int | None = None  # with folds: the fold (0..K-1) that validates; the other folds train
    fraction: float = 1.0  # (0, 1]: train on this seeded, stratified share of the training split (val, test whole)
    # webdataset: shard files as a brace range ('/d/train-{000000..000099}.tar', quoted for Hydra), a glob or a
    # list; val/test null: taken from train by a seeded hash of each sample's __key__
    train: Any = None
    val: Any = None
    test: Any = None
    image_key: str = "jpg;png;jpeg;webp"  # webdataset: a sample's image entry, the first of these it has
    label_key: str = "cls"  # webdataset: the entry holding the class index (or name)
    classes_file: str | None = None  # webdataset: class names, one a line (null: dataset.classes, else
    # classes.txt beside the first train shard)
    shuffle_buffer: int = 1000  # webdataset: samples in each reader's shuffle buffer (seeded per epoch); 0: none
    # an ordered list of augmentations (cnntrain.data.augment), the old mapping {translate: N, hflip: bool}, or null
    augment: Any = None


@dataclass
class ModelConfig:
    name: str
    layers: list[Any]
    description: str = ""
    dropout: Any = None  # a model's tunable dropout, used by its layers as ${model.dropout} (see lenet)
    # a named architecture's knobs (configs/model/torchvision.yaml, timm.yaml), used by its layer as ${model.arch}
    arch: Any = None
    weights: Any = None  # a torchvision weights name, a timm pretrained tag, or a local weights file
    small_input: Any = "auto"  # auto: a stem without early downsampling for inputs under 64 pixels
    resize: Any = "auto"  # auto: the named weights' resolution; null; N; [H, W]
    normalize: str = "weights"  # weights: normalise with the named weights' mean/std; data: the dataset's


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class CheckpointConfig:
    monitor: str = "val/acc"
    mode: str = "max"
    every_steps: Any = None  # also write last.pt every N optimizer steps inside an epoch (null: at epoch ends)
    every_minutes: Any = None  # also write last.pt every N minutes of training inside an epoch


@dataclass
class FinetuneConfig:
    freeze_epochs: int = 0  # train only the head for the first N epochs (backbone frozen, its BatchNorm in eval)
    backbone_lr: float = 1.0  # the backbone's learning rate is optimizer.lr times this (parameter groups)
    head_only: bool = False  # never unfreeze the backbone


@dataclass
class EmaConfig:
    decay: float = 0.0  # 0: off; e.g. 0.999: validation, test, best.pt and exports use the weights' average
    warmup: bool = True  # decay min(decay, (1 + n) / (10 + n)) after n updates, as timm's ModelEmaV3
    every: int = 1  # optimizer steps between updates


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 128  # the global batch: a data-parallel run shares it among its devices
    devices: int = 1  # >1: data-parallel on that many processes (GPUs, or CPU processes sharing the cores)
    sync_batchnorm: bool = False  # data-parallel runs: batch-norm statistics over the global batch
    eval_batch_size: int = 1024
    loss: str = "auto"
    label_smoothing: float = 0.0
    threshold: Any = 0.5  # multi-label: a label is predicted at probability >= this; tune: per label, on val
    class_weights: Any = None  # null | balanced | a list of one non-negative number per class
    sampler: str = "shuffle"  # shuffle | balanced: draws with replacement, each class equally likely
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    tta: str = "none"  # none | hflip: validation and test average each prediction with the mirrored image's
    progress: bool = True
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    grad_clip: Any = None  # max global gradient norm; null: no clipping
    accumulate: int = 1  # batches whose gradients add up before an optimizer step
    decay_norm_and_bias: bool = True  # false: no weight decay on biases and normalisation weights
    time_limit: Any = None  # wall-clock budget of training: seconds or "1h30m"; null: none


@dataclass
class SweepConfig:
    jobs_per_gpu: int = 1  # jobs of a parallel sweep (hydra/launcher=local_parallel) that share one GPU


@dataclass
class ReportConfig:
    plots: bool = True  # curves.png, confusion_matrix.png, misclassified.png in the run directory
    html: bool = True  # report.html: one self-contained page of the run (and of a sweep) from the files written
    analysis: bool = True  # why it fails: worst mistakes, most confused pairs, per-class F1, calibration (summary.json)
    cam: bool = True  # class activation maps over the worst mistakes (worst_mistakes.png)
    cam_layer: str | None = None  # null: the last feature map before the head; else its # in the summary: 2, 1.8
    worst: int = 24  # worst mistakes kept (summary.json) and drawn (worst_mistakes.png)
    calibration_bins: int = 15  # equal-width confidence bins of the expected calibration error


@dataclass
class MLflowConfig:
    tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///<outputs root>/mlflow.db
    experiment: str | None = None  # null: "cnntrain" for single runs, the sweep's own experiment for a sweep's jobs
    log_checkpoint: bool = False  # also store checkpoints/best.pt as an artifact


@dataclass
class WandbConfig:
    mode: str | None = None  # offline | online; null: $WANDB_MODE, else offline (`wandb sync` uploads later)
    project: str | None = None  # null: $WANDB_PROJECT, else cnntrain
    entity: str | None = None  # null: W&B's default (your user)
    log_checkpoint: bool = False  # also save checkpoints/best.pt with the run's files


@dataclass
class TrainConfig:
    dataset: DatasetConfig
    model: ModelConfig
    optimizer: Any
    scheduler: Any
    seed: int = 42
    device: str = "auto"
    deterministic: bool = True
    threads: Any = None
    data_root: str = "data"
    resume: Any = None  # a run directory to continue (the CLI turns it into that run's own config)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # one name or a list of csv, tensorboard, mlflow, wandb; validation makes it a list that starts with csv
    # (metrics.csv is always written). A saved run's `logger: csv` reads the same as [csv].
    logger: Any = "csv"
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

