"""Whether a composed config is one we can run: the schema merge, then every range and choice.

Hydra composes YAML; this module merges the result onto the typed schema (cnntrain.config.schema), where
unknown keys and wrong types fail, then checks ranges and choices, so a bad value is reported by name
before any data is loaded or any output is written. It imports neither torch nor Hydra, which keeps
`cnntrain --help` and config errors fast.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from cnntrain.config.budgets import check_budgets
from cnntrain.config.names import (
    BALANCED,
    DATASET_KINDS,
    DEVICES,
    LOGGERS,
    LOSSES,
    MODES,
    MONITORS,
    PRECISIONS,
    RESIZE_MODES,
    SAMPLERS,
    TASKS,
    THRESHOLD_TUNE,
    TTA_MODES,
    VAL_STRATEGIES,
    WANDB_MODES,
)
from cnntrain.config.optimizers import GROUPS
from cnntrain.config.schema import TrainConfig, variant_schema
from cnntrain.errors import ConfigError, did_you_mean, first_line, unknown_key_message
from cnntrain.files import kind_of


def validate(cfg: DictConfig) -> DictConfig:
    """Return the config merged onto the schema, or raise ConfigError naming the first bad value."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    plain.pop("hydra", None)
    schema = OmegaConf.structured(TrainConfig)
    for group in GROUPS:
        schema[group] = OmegaConf.structured(variant_schema(group, _variant_name(plain, group)))
    try:
        merged = OmegaConf.merge(schema, plain)
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except ConfigKeyError as err:
        raise ConfigError(_unknown_key_message(schema, plain, err)) from None
    except ValidationError as err:
        raise ConfigError(_type_message(err)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"config error at '{_full_key(err)}': {first_line(err)}") from None
    _check_ranges(merged)
    return merged


def _variant_name(cfg: DictConfig, group: str) -> str:
    name = OmegaConf.select(cfg, f"{group}.name")
    declared = GROUPS[group]
    if name not in declared:
        raise ConfigError(f"unknown {group} '{name}'{did_you_mean(str(name), declared)}; "
                          f"available: {', '.join(declared)}")
    return str(name)


def _full_key(err: OmegaConfBaseException) -> str:
    return str(getattr(err, "full_key", None) or getattr(err, "key", "") or "?")


def _unknown_key_message(schema: DictConfig, plain: DictConfig, err: ConfigKeyError) -> str:
    """The keys allowed beside the unknown one: the schema's, or (where the schema leaves a group to its YAML
    files, as for dataset and model) the composed config's."""
    full_key = _full_key(err)
    parent, _, leaf = full_key.rpartition(".")
    allowed: set[str] = set()
    for tree in (schema, plain):
        node = OmegaConf.select(tree, parent, throw_on_missing=False) if parent else tree
        if isinstance(node, DictConfig) and not node._is_missing():
            allowed |= {str(k) for k in node.keys()}
    return unknown_key_message(full_key, sorted(allowed - {leaf}))


_LIST_WORDS = {"model.layers": "a list of layers, e.g. [{conv2d: {out_channels: 8, kernel_size: 3}}, relu, flatten, "
                               "{linear: 10}]"}
_TYPE_WORDS = {"Float": "a number", "Integer": "a whole number", "Boolean": "true or false", "String": "a string"}


def _type_message(err: ValidationError) -> str:
    text = str(err)
    value = getattr(err, "value", None)
    match = re.search(r"could not be converted to (\w+)", text)
    if match:
        expected = _TYPE_WORDS.get(match.group(1), match.group(1))
    elif "valid bool" in text:
        expected = "true or false"
    elif "is not a ListConfig" in text or "is not Optional" in text:
        expected = _LIST_WORDS.get(_full_key(err), "a list, e.g. [1, 2]")
    elif "Incompatible value 'None'" in text:
        expected = "a value (it cannot be null)"
    else:
        expected = "a different type"
    if value is None:
        found = re.search(r"Value '([^']*)'", text)
        value = found.group(1) if found else "?"
    shown = "null" if "is not Optional" in text or "Incompatible value 'None'" in text else value
    return f"{_full_key(err)}={shown}: expected {expected}"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...], prefix: str = "") -> None:
    """`prefix` completes the key's name in the message when cfg is a sub-config (the dataset's)."""
    value = OmegaConf.select(cfg, key)
    _require(value in allowed, f"{prefix}{key}={value}: expected one of {', '.join(allowed)}")


def _positive(cfg: DictConfig, key: str, *, strict: bool = True) -> None:
    value = OmegaConf.select(cfg, key)
    _require(math.isfinite(value), f"{key}={value}: must be a finite number")
    ok = value > 0 if strict else value >= 0
    _require(ok, f"{key}={value}: must be {'> 0' if strict else '>= 0'}")


def _check_ranges(cfg: DictConfig) -> None:
    for key in ("trainer.epochs", "trainer.batch_size", "trainer.eval_batch_size", "trainer.devices",
                "sweep.jobs_per_gpu"):
        _positive(cfg, key)
    _require(cfg.trainer.batch_size >= cfg.trainer.devices,
             f"trainer.batch_size={cfg.trainer.batch_size}: must be >= trainer.devices={cfg.trainer.devices} "
             f"(each device takes a share of the global batch)")
    _check_declared(cfg)
    _positive(cfg, "trainer.early_stopping.patience", strict=False)
    _positive(cfg, "trainer.early_stopping.min_delta", strict=False)
    _positive(cfg, "trainer.accumulate")
    check_budgets(cfg.trainer)
    _positive(cfg, "trainer.ema.every")
    _require(0.0 <= cfg.trainer.ema.decay < 1.0,
             f"trainer.ema.decay={cfg.trainer.ema.decay}: must be in [0, 1) (0: no weight average; e.g. 0.999)")
    _require(cfg.trainer.grad_clip is None or (isinstance(cfg.trainer.grad_clip, (int, float))
                                               and not isinstance(cfg.trainer.grad_clip, bool)
                                               and math.isfinite(cfg.trainer.grad_clip) and cfg.trainer.grad_clip > 0),
             f"trainer.grad_clip={cfg.trainer.grad_clip}: must be null (no clipping) or a number > 0")
    _positive(cfg, "trainer.finetune.freeze_epochs", strict=False)
    _positive(cfg, "trainer.finetune.backbone_lr", strict=False)
    _require(cfg.trainer.finetune.freeze_epochs == 0 or cfg.trainer.devices == 1,
             f"trainer.finetune.freeze_epochs={cfg.trainer.finetune.freeze_epochs}: unfreezing during a data-parallel "
             f"run (trainer.devices={cfg.trainer.devices}) is not supported; use trainer.finetune.head_only=true or "
             f"one device")
    _require(0.0 <= cfg.trainer.label_smoothing < 1.0,
             f"trainer.label_smoothing={cfg.trainer.label_smoothing}: must be in [0, 1)")
    _choice(cfg, "trainer.loss", LOSSES)
    check_threshold(cfg.trainer.threshold)
    check_class_weights(cfg.trainer.class_weights)
    _require(cfg.trainer.sampler in SAMPLERS,
             f"trainer.sampler={cfg.trainer.sampler}: unknown sampler '{cfg.trainer.sampler}'"
             f"{did_you_mean(str(cfg.trainer.sampler), SAMPLERS)}; expected one of {', '.join(SAMPLERS)}")
    _require(not (cfg.trainer.sampler == BALANCED and cfg.dataset.get("kind") == "webdataset"),
             "trainer.sampler=balanced draws with replacement, which a stream of shards cannot; "
             "use trainer.class_weights=balanced (or write balanced shards)")
    _choice(cfg, "trainer.precision", PRECISIONS)
    _choice(cfg, "trainer.tta", TTA_MODES)
    for prefix in ("trainer.early_stopping", "trainer.checkpoint"):
        _choice(cfg, f"{prefix}.monitor", MONITORS)
        _choice(cfg, f"{prefix}.mode", MODES)
    check_device(cfg.device)
    cfg.logger = chosen_loggers(cfg.logger)
    _require(cfg.wandb.mode in (None, *WANDB_MODES),
             f"wandb.mode={cfg.wandb.mode}: expected one of {', '.join(WANDB_MODES)}, or null ($WANDB_MODE, "
             f"else offline)")
    _require(cfg.threads is None or (type(cfg.threads) is int and cfg.threads > 0),
             f"threads={cfg.threads}: must be null or a whole number > 0")
    _require(0 <= cfg.seed < 2**63, f"seed={cfg.seed}: must be a whole number from 0 to 2**63 - 1")
    _check_dataset(cfg.dataset)
    _check_dropout_knob(cfg.model)
    _check_report(cfg.report)


MAX_WORST = 100  # worst mistakes kept and drawn, as misclassified.png's cap
MAX_CALIBRATION_BINS = 1000


def _check_report(report: DictConfig) -> None:
    _require(0 <= report.worst <= MAX_WORST, f"report.worst={report.worst}: must be a whole number from 0 to "
                                             f"{MAX_WORST} (the worst mistakes kept and drawn)")
    _require(1 <= report.calibration_bins <= MAX_CALIBRATION_BINS,
             f"report.calibration_bins={report.calibration_bins}: must be a whole number from 1 to "
             f"{MAX_CALIBRATION_BINS} (equal-width confidence bins of the calibration error; 15 is usual)")
    _require(report.cam_layer != "", "report.cam_layer is empty: give null (the last feature map) or a layer's # "
                                     "in the model summary, e.g. 2 or 1.8")


def chosen_loggers(value: Any) -> list[str]:
    """`logger` as a list of unique names that starts with csv: one name or a list, as typed or as a saved run
    (before loggers could be listed) holds it. metrics.csv is what resume, reproduce and the sweep summary read,
    so csv is written whether or not it is listed."""
    listed = isinstance(value, (list, tuple, ListConfig))
    items = list(value) if listed else [value]
    shown = f"[{', '.join(str(item) for item in items)}]" if listed else "null" if value is None else value
    allowed = f"expected one of {', '.join(LOGGERS)}, or a list of them"
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"logger={shown}: {allowed}")
        if item not in LOGGERS:
            raise ConfigError(f"logger={shown}: unknown logger '{item}'{did_you_mean(item, LOGGERS)}; {allowed}")
    return list(dict.fromkeys(["csv", *items]))


def check_class_weights(value: Any, num_classes: int | None = None) -> None:
    """trainer.class_weights: null, balanced, or one finite number >= 0 per class, not all zero. The count is
    checked when the number of classes is known (the preflight knows it once the data is described)."""
    if value is None or value == BALANCED:
        return
    allowed = f"expected null, {BALANCED}, or a list of one number >= 0 per class"
    if isinstance(value, str):
        raise ConfigError(f"trainer.class_weights={value}: unknown setting{did_you_mean(value, (BALANCED,))}; "
                          f"{allowed}")
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else None
    shown = _listed(items) if items is not None else value
    if items is None or not items or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in items):
        raise ConfigError(f"trainer.class_weights={shown}: {allowed}")
    for index, weight in enumerate(items):
        _require(math.isfinite(weight), f"trainer.class_weights={shown}: weight {weight} (class {index}) is not "
                                        f"a finite number")
        _require(weight >= 0, f"trainer.class_weights={shown}: weight {weight} (class {index}) is negative; "
                              f"every weight must be >= 0")
    _require(any(w > 0 for w in items), f"trainer.class_weights={shown}: every weight is 0, so nothing would be "
                                        f"learned; give at least one class a weight > 0")
    _require(num_classes is None or len(items) == num_classes,
             f"trainer.class_weights={shown}: {len(items)} weight(s), but the dataset has {num_classes} classes; "
             f"give one weight per class (or balanced)")


def _check_dropout_knob(model: DictConfig) -> None:
    """model.dropout (a preset's tunable dropout, see lenet) is a probability; sweeps sample it."""
    if model.dropout is not None:
        _require(isinstance(model.dropout, (int, float)) and 0.0 <= model.dropout < 1.0,
                 f"model.dropout={model.dropout}: must be in [0, 1)")


def check_threshold(value: Any) -> None:
    """trainer.threshold: a probability strictly between 0 and 1, or tune."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(value == THRESHOLD_TUNE or (number and 0.0 < value < 1.0),
             f"trainer.threshold={value}: expected a probability in (0, 1) (0.5 is usual) or {THRESHOLD_TUNE} "
             f"(the best F1 per label on the validation split)")


def _check_task(ds: DictConfig) -> None:
    """dataset.task and the label-file keys that say how a row names several labels."""
    _require(ds.get("task") in (None, *TASKS), f"dataset.task={ds.get('task')}: expected one of {', '.join(TASKS)}, "
                                               f"or null (found from the data)")
    delimiter, columns = ds.get("label_delimiter"), ds.get("label_columns")
    _require(delimiter is None or str(delimiter) != "", "dataset.label_delimiter is empty: give the text that "
                                                        "separates labels in a cell (e.g. ' ', ';' or '|'), or null")
    if columns is not None:
        _require(len(columns) > 0 and all(str(c).strip() for c in columns),
                 "dataset.label_columns is empty or names an empty column: list the 0/1 columns, one per label")
        _require(delimiter is None, "dataset.label_columns and dataset.label_delimiter are both set: a label file "
                                    "gives its labels one way, as 0/1 columns or as one delimited column")
    _require(not (ds.get("task") == "single" and (delimiter is not None or columns is not None)),
             "dataset.task=single but dataset.label_delimiter or dataset.label_columns is set (several labels per "
             "image): use dataset.task=multilabel (or null)")


def check_device(device: str) -> None:
    """auto, cpu, cuda, cuda:N or mps (whether this machine has it is checked later)."""
    ok = device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device) is not None
    _require(ok, f"device={device}: expected one of {', '.join(DEVICES)}")


def _check_dataset(ds: DictConfig) -> None:
    split = ds.val_split
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise ConfigError(f"dataset.val_split={split}: expected a fraction in (0, 1) or a whole number of images")
    if isinstance(split, float):
        _require(0.0 < split < 1.0, f"dataset.val_split={split}: a fraction must be in (0, 1)")
    else:
        _require(split >= 1, f"dataset.val_split={split}: a count must be >= 1")
    _choice(ds, "val_strategy", VAL_STRATEGIES, prefix="dataset.")
    _check_task(ds)
    _check_folds(ds.folds, ds.fold)
    _require(math.isfinite(ds.fraction) and 0.0 < ds.fraction <= 1.0,
             f"dataset.fraction={ds.fraction}: must be in (0, 1], the share of the training split to train on")
    # dataset.augment (names, arguments, ranges, sizes against the images) is checked by the preflight's
    # check_model with the data's shape: its registry needs torch, which this package never imports
    _choice(ds, "kind", DATASET_KINDS, prefix="dataset.")
    if ds.kind == "torchvision":
        _require(bool(ds.torchvision_class), "dataset.torchvision_class is empty: name a torchvision dataset class")
    if ds.kind == "labels":
        _require(bool(ds.file), "dataset.file is not set: name a label file (.csv, .tsv, .jsonl or .ndjson) of image "
                                "paths and labels, e.g. dataset.file=data/labels.csv")
        for key in ("path_column", "label_column", "split_column"):
            _require(ds[key] is None or bool(str(ds[key]).strip()),
                     f"dataset.{key} is empty: name a column of the label file, or null to find it by its usual names")
    if ds.kind == "huggingface":  # dataset.path is checked by its source: every shipped config validates alone
        for key in ("image_column", "label_column"):
            _require(ds[key] is None or bool(str(ds[key]).strip()), f"dataset.{key} is empty: name a column, or "
                                                                      f"null to find it from the features")
        _require(ds.image_column is None or ds.image_column != ds.label_column,
                 f"dataset.image_column and dataset.label_column are both '{ds.image_column}': name two columns")
    if ds.kind == "webdataset":
        _check_shards(ds)
    _require(ds.num_classes is None or ds.num_classes >= 2, f"dataset.num_classes={ds.num_classes}: must be >= 2")
    _require(ds.input_shape is None or (len(ds.input_shape) == 3 and all(d > 0 for d in ds.input_shape)),
             f"dataset.input_shape={_listed(ds.input_shape)}: expected [channels, height, width] or null")
    _require(ds.image_size is None or (len(ds.image_size) == 2 and all(d > 0 for d in ds.image_size)),
             f"dataset.image_size={_listed(ds.image_size)}: expected [height, width] or null")
    _require(ds.channels in (None, 1, 3), f"dataset.channels={ds.channels}: expected 1, 3 or null")
    _require(0.0 < ds.test_split < 1.0, f"dataset.test_split={ds.test_split}: must be in (0, 1)")
    _require(ds.num_workers >= 0, f"dataset.num_workers={ds.num_workers}: must be >= 0")
    _choice(ds, "resize", RESIZE_MODES, prefix="dataset.")
    _require(ds.cache_dir is None or not Path(ds.cache_dir).expanduser().exists()
             or Path(ds.cache_dir).expanduser().is_dir(),
             f"dataset.cache_dir={ds.cache_dir}: is a file, not a folder; name a folder (it is made if missing) or "
             f"null for ~/.cache/cnntrain")
    _require((ds.mean is None) == (ds.std is None), "dataset.mean and dataset.std: give both, or neither (null)")
    channels = ds.input_shape[0] if ds.input_shape is not None else ds.channels
    for key in ("mean", "std"):
        _require(ds[key] is None or channels is None or len(ds[key]) == channels,
                 f"dataset.{key}={_listed(ds[key])}: expected {channels} value(s), one per channel")
    _require(ds.std is None or all(s > 0 for s in ds.std), f"dataset.std={_listed(ds.std)}: every value must be > 0")


def _check_shards(ds: DictConfig) -> None:
    """dataset=webdataset: shard specs given as text or lists of text, hashed splits as fractions."""
    # an empty dataset.train is refused by the source, so every shipped dataset config validates alone
    for key in ("train", "val", "test"):
        value = ds.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, ListConfig) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"dataset.{key}: expected shard files as text or a list of text, got {kind_of(value)}; "
                              f"quote a brace range for Hydra: \"dataset.{key}='/data/{key}-{{000000..000099}}.tar'\"")
    _require(isinstance(ds.val_split, float) or ds.get("val") is not None or ds.folds is not None,
             f"dataset.val_split={ds.val_split}: shards are split by key hash, so give a fraction in (0, 1)")
    _require(ds.shuffle_buffer >= 0, f"dataset.shuffle_buffer={ds.shuffle_buffer}: must be >= 0")
    _require(bool(str(ds.image_key).strip(";")), "dataset.image_key is empty: e.g. 'jpg;png;jpeg;webp'")
    _require(bool(str(ds.label_key)), "dataset.label_key is empty: e.g. cls")


def _check_folds(folds: int | None, fold: int | None) -> None:
    """K-fold cross-validation: both keys or neither, K >= 2, fold in 0..K-1."""
    if folds is None:
        _require(fold is None, f"dataset.fold={fold} needs dataset.folds, the number of folds (>= 2), "
                               f"e.g. dataset.folds=5")
        return
    _require(folds >= 2, f"dataset.folds={folds}: must be >= 2 (the number of cross-validation folds), or null "
                         f"to validate on dataset.val_split")
    _require(fold is not None, f"dataset.folds={folds} needs dataset.fold, the fold that validates (0..{folds - 1}); "
                               f"run every fold with -m dataset.fold={','.join(map(str, range(folds)))}")
    _require(0 <= fold < folds, f"dataset.fold={fold} is out of range for dataset.folds={folds}: "
                                f"use 0..{folds - 1}")


def _listed(value: Any) -> Any:
    return list(value) if value is not None else None


def _check_declared(cfg: DictConfig) -> None:
    """Each optimizer and scheduler argument against the rule its declaration gives it."""
    for group, declared in GROUPS.items():
        node = cfg[group]
        values = OmegaConf.to_container(node, resolve=True)
        chosen = declared[node.name]
        complaints = [arg.check(f"{group}.{key}", values[key]) for key, arg in chosen.args.items()]
        complaints += [rule(values) for rule in chosen.rules]
        for complaint in complaints:
            if complaint is not None:
                raise ConfigError(complaint)
    if cfg.scheduler.name == "cosine":
        warmup = cfg.scheduler.warmup_epochs
        _require(0 <= warmup < cfg.trainer.epochs,
                 f"scheduler.warmup_epochs={warmup}: must be in [0, trainer.epochs)")
