"""The config schema and its checks.

Hydra composes YAML; this module decides whether the result is a config we can run. It merges the
composed config onto typed dataclasses (unknown keys and wrong types fail there) and then checks
ranges, so a bad value is reported by name before any data is loaded or any output is written.
It imports neither torch nor Hydra, which keeps `cnntrain --help` and config errors fast.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from cnntrain.errors import ConfigError, did_you_mean

METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
CONFIG_GROUPS = ("dataset", "model", "optimizer", "scheduler", "experiment", "hparams_search")


def config_dir() -> Path:
    """Where the YAML configs are: inside the package when installed from a wheel, else the repo's configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "configs"


def group_options(group: str) -> list[str]:
    """The choices of one config group, from the YAML files on disk."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


@dataclass
class AugmentConfig:
    translate: int = 0
    hflip: bool = False


@dataclass
class DatasetConfig:
    name: str
    root: str
    kind: str = "torchvision"  # torchvision (a dataset class by name) | imagefolder (root/train/<class>/...)
    torchvision_class: str = ""
    split: Optional[str] = None  # EMNIST's split argument
    # null: taken from the data (always the case for an image folder); stated: checked against the data
    input_shape: Optional[list[int]] = None
    num_classes: Optional[int] = None
    classes: Optional[list[str]] = None
    mean: Optional[list[float]] = None  # null: computed from the training split
    std: Optional[list[float]] = None
    image_size: Optional[list[int]] = None  # imagefolder: [height, width] to resize to (null: the first image's)
    channels: Optional[int] = None  # imagefolder: 1 (grayscale) or 3 (RGB); null: the first image's
    test_split: float = 0.2  # imagefolder without root/test: the fraction of train held out as test
    in_memory: bool = True  # imagefolder: decode once into tensors (cached); false: DataLoader workers per batch
    num_workers: int = 2  # imagefolder with in_memory=false: decoding processes
    download: bool = True
    val_split: Any = 0.1  # a fraction in (0, 1) or a count of images; checked below
    val_strategy: str = "random"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    name: str
    layers: list[Any]
    description: str = ""
    dropout: Any = None  # a model's tunable dropout, used by its layers as ${model.dropout} (see lenet)


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    dampening: float = 0.0
    weight_decay: float = 5e-4


@dataclass
class RMSpropConfig:
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0


@dataclass
class NoSchedulerConfig:
    name: str = "none"


@dataclass
class PlateauConfig:
    name: str = "plateau"
    monitor: str = "val/loss"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 4
    threshold: float = 1e-4
    min_lr: float = 0.0


@dataclass
class StepConfig:
    name: str = "step"
    step_size: int = 5
    gamma: float = 0.1


@dataclass
class CosineConfig:
    name: str = "cosine"
    eta_min: float = 0.0
    warmup_epochs: float = 0.0


@dataclass
class OneCycleConfig:
    name: str = "onecycle"
    max_lr: Any = None  # None means optimizer.lr
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"
    three_phase: bool = False


OPTIMIZER_SCHEMAS = {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig, "rmsprop": RMSpropConfig}
SCHEDULER_SCHEMAS = {
    "none": NoSchedulerConfig,
    "plateau": PlateauConfig,
    "step": StepConfig,
    "cosine": CosineConfig,
    "onecycle": OneCycleConfig,
}


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


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1024
    loss: str = "auto"
    label_smoothing: float = 0.0
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    tta: str = "none"  # none | hflip: validation and test average each prediction with the mirrored image's
    progress: bool = True
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


@dataclass
class ReportConfig:
    plots: bool = True  # curves.png, confusion_matrix.png, misclassified.png in the run directory


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
    logger: str = "csv"  # csv (metrics.csv) | tensorboard (metrics.csv plus event files in RUN_DIR/tensorboard)


def validate(cfg: DictConfig) -> DictConfig:
    """Return the config merged onto the schema, or raise ConfigError naming the first bad value."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    plain.pop("hydra", None)
    schema = OmegaConf.structured(TrainConfig)
    schema.optimizer = OmegaConf.structured(_variant(plain, "optimizer", OPTIMIZER_SCHEMAS))
    schema.scheduler = OmegaConf.structured(_variant(plain, "scheduler", SCHEDULER_SCHEMAS))
    try:
        merged = OmegaConf.merge(schema, plain)
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except ConfigKeyError as err:
        raise ConfigError(_unknown_key_message(schema, err)) from None
    except ValidationError as err:
        raise ConfigError(_type_message(err)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"config error at '{_full_key(err)}': {_first_line(err)}") from None
    _check_ranges(merged)
    return merged


def _variant(cfg: DictConfig, group: str, schemas: dict[str, type]) -> type:
    name = OmegaConf.select(cfg, f"{group}.name")
    if name not in schemas:
        raise ConfigError(f"unknown {group} '{name}'{did_you_mean(str(name), schemas)}; available: {', '.join(schemas)}")
    return schemas[name]


def _full_key(err: OmegaConfBaseException) -> str:
    return str(getattr(err, "full_key", None) or getattr(err, "key", "") or "?")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _unknown_key_message(schema: DictConfig, err: ConfigKeyError) -> str:
    full_key = _full_key(err)
    parent = full_key.rpartition(".")[0]
    node = OmegaConf.select(schema, parent) if parent else schema
    allowed = sorted(node.keys()) if isinstance(node, DictConfig) else []
    return unknown_key_message(full_key, allowed)


def unknown_key_message(full_key: str, allowed: list[str]) -> str:
    """One sentence for a key the schema does not know, with the closest known key."""
    parent, _, leaf = full_key.rpartition(".")
    prefix = f"{parent}." if parent else ""
    close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.5)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    where = f"keys of {parent}" if parent else "top-level keys"
    return f"unknown config key '{full_key}'{hint}; {where}: {', '.join(allowed)}"


_TYPE_WORDS = {"Float": "a number", "Integer": "a whole number", "Boolean": "true or false", "String": "a string"}


def _type_message(err: ValidationError) -> str:
    text = str(err)
    value = getattr(err, "value", None)
    match = re.search(r"could not be converted to (\w+)", text)
    if match:
        expected = _TYPE_WORDS.get(match.group(1), match.group(1))
    else:
        expected = "true or false" if "valid bool" in text else "a different type"
    if value is None:
        found = re.search(r"Value '([^']*)'", text)
        value = found.group(1) if found else "?"
    return f"{_full_key(err)}={value}: expected {expected}"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    _require(value in allowed, f"{key}={value}: expected one of {', '.join(allowed)}")


def _positive(cfg: DictConfig, key: str, *, strict: bool = True) -> None:
    value = OmegaConf.select(cfg, key)
    ok = value > 0 if strict else value >= 0
    _require(ok, f"{key}={value}: must be {'> 0' if strict else '>= 0'}")


def _check_ranges(cfg: DictConfig) -> None:
    for key in ("trainer.epochs", "trainer.batch_size", "trainer.eval_batch_size", "optimizer.lr"):
        _positive(cfg, key)
    _positive(cfg, "trainer.early_stopping.patience", strict=False)
    _positive(cfg, "trainer.early_stopping.min_delta", strict=False)
    _positive(cfg, "optimizer.weight_decay", strict=False)
    _require(0.0 <= cfg.trainer.label_smoothing < 1.0,
             f"trainer.label_smoothing={cfg.trainer.label_smoothing}: must be in [0, 1)")
    _choice(cfg, "trainer.loss", ("auto", "cross_entropy", "nll"))
    _choice(cfg, "trainer.precision", ("fp32", "bf16", "fp16"))
    _choice(cfg, "trainer.tta", ("none", "hflip"))
    for prefix in ("trainer.early_stopping", "trainer.checkpoint"):
        _choice(cfg, f"{prefix}.monitor", METRICS)
        _choice(cfg, f"{prefix}.mode", ("min", "max"))
    check_device(cfg.device)
    _choice(cfg, "logger", ("csv", "tensorboard"))
    _require(cfg.threads is None or (isinstance(cfg.threads, int) and cfg.threads > 0),
             f"threads={cfg.threads}: must be null or a whole number > 0")
    _check_dataset(cfg.dataset)
    _check_scheduler(cfg)
    _check_dropout_knob(cfg.model)


def _check_dropout_knob(model: DictConfig) -> None:
    """model.dropout (a preset's tunable dropout, see lenet) is a probability; sweeps sample it."""
    if model.dropout is not None:
        _require(isinstance(model.dropout, (int, float)) and 0.0 <= model.dropout < 1.0,
                 f"model.dropout={model.dropout}: must be in [0, 1)")


def check_device(device: str) -> None:
    """auto, cpu, cuda, cuda:N or mps (whether this machine has it is checked later)."""
    ok = device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device) is not None
    _require(ok, f"device={device}: expected one of auto, cpu, cuda, cuda:N, mps")


def _check_dataset(ds: DictConfig) -> None:
    split = ds.val_split
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise ConfigError(f"dataset.val_split={split}: expected a fraction in (0, 1) or a whole number of images")
    if isinstance(split, float):
        _require(0.0 < split < 1.0, f"dataset.val_split={split}: a fraction must be in (0, 1)")
    else:
        _require(split >= 1, f"dataset.val_split={split}: a count must be >= 1")
    _choice(ds, "val_strategy", ("random", "stratified"))
    _require(ds.augment.translate >= 0, f"dataset.augment.translate={ds.augment.translate}: must be >= 0 pixels")
    _choice(ds, "kind", ("torchvision", "imagefolder"))
    if ds.kind == "torchvision":
        _require(bool(ds.torchvision_class), "dataset.torchvision_class is empty: name a torchvision dataset class")
    _require(ds.num_classes is None or ds.num_classes >= 2, f"dataset.num_classes={ds.num_classes}: must be >= 2")
    _require(ds.input_shape is None or (len(ds.input_shape) == 3 and all(d > 0 for d in ds.input_shape)),
             f"dataset.input_shape={_listed(ds.input_shape)}: expected [channels, height, width] or null")
    _require(ds.image_size is None or (len(ds.image_size) == 2 and all(d > 0 for d in ds.image_size)),
             f"dataset.image_size={_listed(ds.image_size)}: expected [height, width] or null")
    _require(ds.channels in (None, 1, 3), f"dataset.channels={ds.channels}: expected 1, 3 or null")
    _require(0.0 < ds.test_split < 1.0, f"dataset.test_split={ds.test_split}: must be in (0, 1)")
    _require(ds.num_workers >= 0, f"dataset.num_workers={ds.num_workers}: must be >= 0")
    _require((ds.mean is None) == (ds.std is None), "dataset.mean and dataset.std: give both, or neither (null)")
    channels = ds.input_shape[0] if ds.input_shape is not None else ds.channels
    for key in ("mean", "std"):
        _require(ds[key] is None or channels is None or len(ds[key]) == channels,
                 f"dataset.{key}={_listed(ds[key])}: expected {channels} value(s), one per channel")
    _require(ds.std is None or all(s > 0 for s in ds.std), f"dataset.std={_listed(ds.std)}: every value must be > 0")


def _listed(value: Any) -> Any:
    return list(value) if value is not None else None


def _check_scheduler(cfg: DictConfig) -> None:
    sched = cfg.scheduler
    if sched.name == "plateau":
        _choice(cfg, "scheduler.monitor", METRICS)
        _choice(cfg, "scheduler.mode", ("min", "max"))
        _require(0.0 < sched.factor < 1.0, f"scheduler.factor={sched.factor}: must be in (0, 1)")
    elif sched.name == "step":
        _positive(cfg, "scheduler.step_size")
    elif sched.name == "onecycle":
        _require(sched.max_lr is None or (isinstance(sched.max_lr, (int, float)) and sched.max_lr > 0),
                 f"scheduler.max_lr={sched.max_lr}: must be null (use optimizer.lr) or a number > 0")
        _require(0.0 < sched.pct_start < 1.0, f"scheduler.pct_start={sched.pct_start}: must be in (0, 1)")
        _choice(cfg, "scheduler.anneal_strategy", ("cos", "linear"))
    elif sched.name == "cosine":
        _require(0 <= sched.warmup_epochs < cfg.trainer.epochs,
                 f"scheduler.warmup_epochs={sched.warmup_epochs}: must be in [0, trainer.epochs)")
