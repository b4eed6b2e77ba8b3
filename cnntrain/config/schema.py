"""The shape of a cnntrain config: typed dataclasses that OmegaConf merges the composed YAML onto.

Unknown keys and values of the wrong type fail in that merge (cnntrain.config.validate turns the failure
into one sentence). Every default is written once, in YAML: the root config's (trainer, report, sweep, the loggers'
sections, seed, device...) in configs/train.yaml, which the classes below read (`from_yaml`), and the optimizer and
scheduler entries, built from their declaration (cnntrain.config.optimizers) and their own YAML files. The classes
give each key its type, and a run's packages their typed section (`section`). A saved config that lacks a key added
since takes the default from the YAML files of the cnntrain that reads it.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field, make_dataclass
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf

from cnntrain.config.compose import config_dir
from cnntrain.config.optimizers import GROUPS

Section = TypeVar("Section")


def section(node: DictConfig, kind: type[Section]) -> Section:
    """One section of a validated config as its dataclass (`kind`: TrainerConfig, MLflowConfig, ...), its values
    resolved and plain (lists, not ListConfig): what a package below the commands takes instead of the whole
    config. A node not merged onto the schema yet (a hand-made config) is merged onto `kind` first."""
    if OmegaConf.get_type(node) is not kind:
        node = OmegaConf.merge(OmegaConf.structured(kind), OmegaConf.to_container(node, resolve=True))
    value = OmegaConf.to_object(node)
    assert isinstance(value, kind)
    return value


def from_yaml(key: str) -> Any:
    """A field whose default is configs/train.yaml's value at `key` (dotted): the root config's defaults are written
    there alone, where users read and override them and `cnntrain --help` prints them, each with its comment.
    The file is read when a schema is first built (validation), not when this module is imported."""
    return field(
        default_factory=lambda: copy.deepcopy(functools.reduce(dict.__getitem__, key.split("."), _train_defaults()))
    )


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
    decode_device: str = "cpu"  # streamed image files and shards: where JPEGs are decoded (cpu | cuda)
    skip_bad_images: bool = False  # image files: leave undecodable files out (listed in bad_images.txt), not stop
    cache_dir: str | None = None  # where decoded caches and shard indexes go; null: ~/.cache/cnntrain
    download: bool = True
    # labels: the label file (.csv, .tsv, .jsonl, .ndjson); image paths in it are relative to its folder
    file: str | None = None
    image_dir: str | None = None  # labels: the folder relative image paths are read from; null: the label file's
    allow_outside_paths: bool = False  # labels, huggingface: rows may name image files outside the dataset's folder
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
    exclude: str | None = None  # a file listing images to leave out: paths (image files) or split/index keys
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
    enabled: bool = from_yaml("trainer.early_stopping.enabled")
    monitor: str = from_yaml("trainer.early_stopping.monitor")
    mode: str = from_yaml("trainer.early_stopping.mode")
    patience: int = from_yaml("trainer.early_stopping.patience")
    min_delta: float = from_yaml("trainer.early_stopping.min_delta")


@dataclass
class CheckpointConfig:
    monitor: str = from_yaml("trainer.checkpoint.monitor")
    mode: str = from_yaml("trainer.checkpoint.mode")
    every_steps: Any = from_yaml("trainer.checkpoint.every_steps")
    every_minutes: Any = from_yaml("trainer.checkpoint.every_minutes")


@dataclass
class FinetuneConfig:
    freeze_epochs: int = from_yaml("trainer.finetune.freeze_epochs")
    backbone_lr: float = from_yaml("trainer.finetune.backbone_lr")
    head_only: bool = from_yaml("trainer.finetune.head_only")


@dataclass
class EmaConfig:
    decay: float = from_yaml("trainer.ema.decay")
    warmup: bool = from_yaml("trainer.ema.warmup")
    every: int = from_yaml("trainer.ema.every")


@dataclass
class TrainerConfig:
    epochs: int = from_yaml("trainer.epochs")
    batch_size: int = from_yaml("trainer.batch_size")
    devices: int = from_yaml("trainer.devices")
    sync_batchnorm: bool = from_yaml("trainer.sync_batchnorm")
    eval_batch_size: int = from_yaml("trainer.eval_batch_size")
    loss: str = from_yaml("trainer.loss")
    label_smoothing: float = from_yaml("trainer.label_smoothing")
    threshold: Any = from_yaml("trainer.threshold")
    class_weights: Any = from_yaml("trainer.class_weights")
    sampler: str = from_yaml("trainer.sampler")
    precision: str = from_yaml("trainer.precision")
    channels_last: bool = from_yaml("trainer.channels_last")
    compile: bool = from_yaml("trainer.compile")
    tta: str = from_yaml("trainer.tta")
    progress: bool = from_yaml("trainer.progress")
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    grad_clip: Any = from_yaml("trainer.grad_clip")
    accumulate: int = from_yaml("trainer.accumulate")
    decay_norm_and_bias: bool = from_yaml("trainer.decay_norm_and_bias")
    time_limit: Any = from_yaml("trainer.time_limit")


@dataclass
class SweepConfig:
    jobs_per_gpu: int = from_yaml("sweep.jobs_per_gpu")


@dataclass
class ReportConfig:
    plots: bool = from_yaml("report.plots")
    html: bool = from_yaml("report.html")
    analysis: bool = from_yaml("report.analysis")
    cam: bool = from_yaml("report.cam")
    cam_layer: str | None = from_yaml("report.cam_layer")
    worst: int = from_yaml("report.worst")
    calibration_bins: int = from_yaml("report.calibration_bins")


@dataclass
class MLflowConfig:
    tracking_uri: str | None = from_yaml("mlflow.tracking_uri")
    experiment: str | None = from_yaml("mlflow.experiment")
    log_checkpoint: bool = from_yaml("mlflow.log_checkpoint")


@dataclass
class WandbConfig:
    mode: str | None = from_yaml("wandb.mode")
    project: str | None = from_yaml("wandb.project")
    entity: str | None = from_yaml("wandb.entity")
    log_checkpoint: bool = from_yaml("wandb.log_checkpoint")


@dataclass
class TrainConfig:
    dataset: DatasetConfig
    model: ModelConfig
    optimizer: Any
    scheduler: Any
    seed: int = from_yaml("seed")
    device: str = from_yaml("device")
    deterministic: bool = from_yaml("deterministic")
    threads: Any = from_yaml("threads")
    data_root: str = "data"
    resume: Any = from_yaml("resume")
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # one name or a list of csv, tensorboard, mlflow, wandb; validation makes it a list that starts with csv
    # (metrics.csv is always written). A saved run's `logger: csv` reads the same as [csv].
    logger: Any = from_yaml("logger")
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


@functools.cache
def _train_defaults() -> dict[str, Any]:
    """configs/train.yaml as plain data, its interpolations left as written."""
    data = OmegaConf.to_container(OmegaConf.load(config_dir() / "train.yaml"))
    assert isinstance(data, dict)
    return data  # type: ignore[return-value]
