"""Whether a composed config is one we can run: the schema merge, then every range and choice.

Hydra composes YAML; this module merges the result onto the typed schema (cnntrain.config.schema), where
unknown keys and wrong types fail, then checks ranges and choices, so a bad value is reported by name
before any data is loaded or any output is written. It imports neither torch nor Hydra, which keeps
`cnntrain --help` and config errors fast.
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from cnntrain.config.budgets import check_budgets
from cnntrain.config.checks import choice, listed, positive, require
from cnntrain.config.names import (
    BALANCED,
    DEVICES,
    LOGGERS,
    LOSSES,
    MODES,
    MONITORS,
    PRECISIONS,
    SAMPLERS,
    THRESHOLD_TUNE,
    TTA_MODES,
    WANDB_MODES,
)
from cnntrain.config.optimizers import GROUPS
from cnntrain.config.schema import TrainConfig, variant_schema
from cnntrain.config.validate_dataset import check_dataset
from cnntrain.errors import ConfigError, did_you_mean, first_line, unknown_key_message


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
        raise ConfigError(
            f"unknown {group} '{name}'{did_you_mean(str(name), declared)}; available: {', '.join(declared)}"
        )
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


_LIST_WORDS = {
    "model.layers": "a list of layers, e.g. [{conv2d: {out_channels: 8, kernel_size: 3}}, relu, flatten, {linear: 10}]"
}
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


def _check_ranges(cfg: DictConfig) -> None:
    for key in (
        "trainer.epochs",
        "trainer.batch_size",
        "trainer.eval_batch_size",
        "trainer.devices",
        "sweep.jobs_per_gpu",
    ):
        positive(cfg, key)
    require(
        cfg.trainer.batch_size >= cfg.trainer.devices,
        f"trainer.batch_size={cfg.trainer.batch_size}: must be >= trainer.devices={cfg.trainer.devices} "
        f"(each device takes a share of the global batch)",
    )
    _check_declared(cfg)
    positive(cfg, "trainer.early_stopping.patience", strict=False)
    positive(cfg, "trainer.early_stopping.min_delta", strict=False)
    positive(cfg, "trainer.accumulate")
    check_budgets(cfg.trainer)
    positive(cfg, "trainer.ema.every")
    require(
        0.0 <= cfg.trainer.ema.decay < 1.0,
        f"trainer.ema.decay={cfg.trainer.ema.decay}: must be in [0, 1) (0: no weight average; e.g. 0.999)",
    )
    require(
        cfg.trainer.grad_clip is None
        or (
            isinstance(cfg.trainer.grad_clip, (int, float))
            and not isinstance(cfg.trainer.grad_clip, bool)
            and math.isfinite(cfg.trainer.grad_clip)
            and cfg.trainer.grad_clip > 0
        ),
        f"trainer.grad_clip={cfg.trainer.grad_clip}: must be null (no clipping) or a number > 0",
    )
    positive(cfg, "trainer.finetune.freeze_epochs", strict=False)
    positive(cfg, "trainer.finetune.backbone_lr", strict=False)
    require(
        cfg.trainer.finetune.freeze_epochs == 0 or cfg.trainer.devices == 1,
        f"trainer.finetune.freeze_epochs={cfg.trainer.finetune.freeze_epochs}: unfreezing during a data-parallel "
        f"run (trainer.devices={cfg.trainer.devices}) is not supported; use trainer.finetune.head_only=true or "
        f"one device",
    )
    require(
        0.0 <= cfg.trainer.label_smoothing < 1.0,
        f"trainer.label_smoothing={cfg.trainer.label_smoothing}: must be in [0, 1)",
    )
    choice(cfg, "trainer.loss", LOSSES)
    check_threshold(cfg.trainer.threshold)
    check_class_weights(cfg.trainer.class_weights)
    require(
        cfg.trainer.sampler in SAMPLERS,
        f"trainer.sampler={cfg.trainer.sampler}: unknown sampler '{cfg.trainer.sampler}'"
        f"{did_you_mean(str(cfg.trainer.sampler), SAMPLERS)}; expected one of {', '.join(SAMPLERS)}",
    )
    require(
        not (cfg.trainer.sampler == BALANCED and cfg.dataset.get("kind") == "webdataset"),
        "trainer.sampler=balanced draws with replacement, which a stream of shards cannot; "
        "use trainer.class_weights=balanced (or write balanced shards)",
    )
    choice(cfg, "trainer.precision", PRECISIONS)
    choice(cfg, "trainer.tta", TTA_MODES)
    for prefix in ("trainer.early_stopping", "trainer.checkpoint"):
        choice(cfg, f"{prefix}.monitor", MONITORS)
        choice(cfg, f"{prefix}.mode", MODES)
    check_device(cfg.device)
    cfg.logger = chosen_loggers(cfg.logger)
    require(
        cfg.wandb.mode in (None, *WANDB_MODES),
        f"wandb.mode={cfg.wandb.mode}: expected one of {', '.join(WANDB_MODES)}, or null ($WANDB_MODE, else offline)",
    )
    require(
        cfg.threads is None or (type(cfg.threads) is int and cfg.threads > 0),
        f"threads={cfg.threads}: must be null or a whole number > 0",
    )
    require(0 <= cfg.seed < 2**63, f"seed={cfg.seed}: must be a whole number from 0 to 2**63 - 1")
    check_dataset(cfg.dataset)
    _check_dropout_knob(cfg.model)
    _check_report(cfg.report)


MAX_WORST = 100  # worst mistakes kept and drawn, as misclassified.png's cap
MAX_CALIBRATION_BINS = 1000


def _check_report(report: DictConfig) -> None:
    require(
        0 <= report.worst <= MAX_WORST,
        f"report.worst={report.worst}: must be a whole number from 0 to "
        f"{MAX_WORST} (the worst mistakes kept and drawn)",
    )
    require(
        1 <= report.calibration_bins <= MAX_CALIBRATION_BINS,
        f"report.calibration_bins={report.calibration_bins}: must be a whole number from 1 to "
        f"{MAX_CALIBRATION_BINS} (equal-width confidence bins of the calibration error; 15 is usual)",
    )
    require(
        report.cam_layer != "",
        "report.cam_layer is empty: give null (the last feature map) or a layer's # "
        "in the model summary, e.g. 2 or 1.8",
    )


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
        raise ConfigError(
            f"trainer.class_weights={value}: unknown setting{did_you_mean(value, (BALANCED,))}; {allowed}"
        )
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else None
    shown = listed(items) if items is not None else value
    if items is None or not items or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in items):
        raise ConfigError(f"trainer.class_weights={shown}: {allowed}")
    for index, weight in enumerate(items):
        require(
            math.isfinite(weight),
            f"trainer.class_weights={shown}: weight {weight} (class {index}) is not a finite number",
        )
        require(
            weight >= 0,
            f"trainer.class_weights={shown}: weight {weight} (class {index}) is negative; every weight must be >= 0",
        )
    require(
        any(w > 0 for w in items),
        f"trainer.class_weights={shown}: every weight is 0, so nothing would be "
        f"learned; give at least one class a weight > 0",
    )
    require(
        num_classes is None or len(items) == num_classes,
        f"trainer.class_weights={shown}: {len(items)} weight(s), but the dataset has {num_classes} classes; "
        f"give one weight per class (or balanced)",
    )


def _check_dropout_knob(model: DictConfig) -> None:
    """model.dropout (a preset's tunable dropout, see lenet) is a probability; sweeps sample it."""
    if model.dropout is not None:
        require(
            isinstance(model.dropout, (int, float)) and 0.0 <= model.dropout < 1.0,
            f"model.dropout={model.dropout}: must be in [0, 1)",
        )


def check_threshold(value: Any) -> None:
    """trainer.threshold: a probability strictly between 0 and 1, or tune."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    require(
        value == THRESHOLD_TUNE or (number and 0.0 < value < 1.0),
        f"trainer.threshold={value}: expected a probability in (0, 1) (0.5 is usual) or {THRESHOLD_TUNE} "
        f"(the best F1 per label on the validation split)",
    )


def check_device(device: str) -> None:
    """auto, cpu, cuda, cuda:N or mps (whether this machine has it is checked later)."""
    ok = device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device) is not None
    require(ok, f"device={device}: expected one of {', '.join(DEVICES)}")


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
        require(0 <= warmup < cfg.trainer.epochs, f"scheduler.warmup_epochs={warmup}: must be in [0, trainer.epochs)")
