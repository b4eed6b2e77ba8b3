"""What a checkpoint holds, read back and checked: its config, its data description and the model they rebuild.

Opening a finished run (cnntrain.inference.load) and resuming one both read checkpoints through here, so a
damaged or edited file is one line naming the key, whichever way it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cnntrain.config.names import EPOCH_COLUMNS, MODES, MONITORS
from cnntrain.config.saved import saved_config_data
from cnntrain.config.validate import validate
from cnntrain.data.description import DataDescription
from cnntrain.errors import CheckpointError, ConfigError, ModelConfigError, first_line
from cnntrain.files import kind_of
from cnntrain.models.architectures import saved_weights
from cnntrain.models.builder import build_model
from cnntrain.training.checkpoints import load_weights

DESCRIPTION_KEYS = ("input_shape", "classes", "mean", "std")
EDITED = "the file was edited or written by another program"  # how most messages here end: the fix is another file


def saved_config(payload: dict[str, Any], path: Path) -> DictConfig:
    """A checkpoint's 'config', checked to be a mapping of plain values (within the budgets of saved configs;
    its strings kept literal, never resolved) that names its model's layers."""
    if "config" not in payload:
        raise CheckpointError(f"{path} holds no config; it was not written by a cnntrain run")
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: its 'config' is {kind_of(payload['config'])}, not the mapping a run saves; "
                              f"{EDITED}")
    try:
        config = OmegaConf.create(saved_config_data(payload["config"], f"{path}: its 'config'", fix=EDITED))
        OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as err:
        raise CheckpointError(f"{path}: its 'config' cannot be read ({first_line(err)}); {EDITED}") from None
    if not isinstance(OmegaConf.select(config, "model.layers"), ListConfig):
        raise CheckpointError(f"{path}: its 'config' has no model.layers list, so the model cannot be rebuilt; "
                              f"{EDITED}")
    return config


def saved_description(payload: dict[str, Any], config: DictConfig, path: Path) -> DataDescription:
    """Checkpoints record the input shape, classes and statistics the data gave; older ones only the config."""
    where = "its 'data'" if "data" in payload else "its config's dataset (it holds no 'data')"
    source = payload["data"] if "data" in payload else OmegaConf.select(config, "dataset")
    if isinstance(source, DictConfig):
        source = OmegaConf.to_container(source, resolve=True)
    if not isinstance(source, dict):
        raise CheckpointError(f"{path}: {where} is {kind_of(source)}, not a mapping of input_shape, classes, mean "
                              f"and std; {EDITED}")
    missing = [key for key in DESCRIPTION_KEYS if source.get(key) is None]
    if missing:
        raise CheckpointError(f"{path}: {where} lacks {', '.join(missing)}, so inputs cannot be shaped and "
                              f"normalised as in training; use a checkpoint written by a complete run")
    try:
        description = DataDescription.from_dict(source)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {where} holds a bad value ({first_line(err)})") from None
    _check_description(description, where, path)
    return description


def saved_model(payload: dict[str, Any], config: DictConfig, description: DataDescription, path: Path) -> nn.Module:
    """The model the config's layers build for the saved input shape, with the checkpoint's weights loaded."""
    if "model" not in payload:
        raise CheckpointError(f"{path} lacks 'model', the trained weights; use a checkpoint written by a cnntrain run")
    name = str(OmegaConf.select(config, "model.name", default="model"))
    try:
        with saved_weights():  # the checkpoint holds every tensor: no pretrained file is read
            model, _ = build_model(config.model.layers, description.input_shape, model_name=name, count_macs=False)
    except ModelConfigError as err:
        raise CheckpointError(f"{path}: the model its config describes does not build: {err}") from None
    load_weights(model, payload["model"], path)
    return model


def check_resume_state(checkpoint: dict[str, Any], path: Path, types: Mapping[str, type | tuple[type, ...]]) -> None:
    """A last.pt's training state, checked value by value before a resume starts: a damaged or edited file is one
    line naming the key now, not a traceback once the run is under way. `types` maps each key to its type."""
    for key, expected in types.items():
        value = checkpoint[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise CheckpointError(f"{path} cannot be resumed: its '{key}' is {kind_of(value)}, not "
                                  f"{_type_words(expected)}; {EDITED}")
    if checkpoint["epoch"] < (0 if "in_epoch" in checkpoint else 1):  # inside the first epoch: none finished
        raise CheckpointError(f"{path} cannot be resumed: its 'epoch' is {checkpoint['epoch']}, not a finished epoch")
    for key in ("best", "early_stopping"):
        _check_watch(checkpoint[key], key, path)
    _check_history(checkpoint["history"], path)
    _check_rng(checkpoint["rng"], path)
    config = _resume_config(checkpoint, path)
    model = saved_model(checkpoint, config, saved_description(checkpoint, config, path), path)
    _check_optimizer(checkpoint["optimizer"], sum(1 for _ in model.parameters()), path)


def _check_description(description: DataDescription, where: str, path: Path) -> None:
    channels = description.input_shape[0] if len(description.input_shape) == 3 else 0
    if len(description.input_shape) != 3 or min(description.input_shape) < 1:
        raise CheckpointError(f"{path}: {where} has input_shape {list(description.input_shape)}; expected three "
                              f"positive sizes [channels, height, width]; {EDITED}")
    for name, values in (("mean", description.mean), ("std", description.std)):
        if len(values or []) != channels:
            raise CheckpointError(f"{path}: {where} has {len(values or [])} {name} values for {channels} "
                                  f"channel{'' if channels == 1 else 's'}; {EDITED}")
    if not description.classes:
        raise CheckpointError(f"{path}: {where} has no classes; {EDITED}")


def _type_words(expected: type | tuple[type, ...]) -> str:
    words = {int: "a whole number", dict: "a mapping", list: "a list", type(None): "null"}
    options = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(words.get(option, option.__name__) for option in options)


def _check_watch(state: dict[str, Any], key: str, path: Path) -> None:
    problem = _watch_problem(state)
    if problem:
        raise CheckpointError(f"{path} cannot be resumed: its '{key}' {problem}")


def _watch_problem(state: dict[str, Any]) -> str:
    """What is wrong with a saved MetricWatch ('best', 'early_stopping'): which metric, which way, values so far."""
    from dataclasses import fields

    from cnntrain.training.loop import MetricWatch

    allowed = [field.name for field in fields(MetricWatch)]
    unknown = [str(name) for name in state if name not in allowed]
    if unknown:
        return f"has unknown keys {', '.join(unknown)} (it takes {', '.join(allowed)})"
    if state.get("monitor") not in MONITORS:
        return f"monitor is {state.get('monitor')!r}, not one of {', '.join(MONITORS)}"
    if state.get("mode") not in MODES:
        return f"mode is {state.get('mode')!r}, not one of {', '.join(MODES)}"
    for name in ("min_delta", "best", "best_epoch", "bad_epochs"):
        value = state.get(name, 0)
        if not _is_number(value) and not (name == "best" and value is None):
            return f"{name} is {kind_of(value)}, not a number"
    return ""


def _check_history(history: list[Any], path: Path) -> None:
    for number, row in enumerate(history, 1):
        bad = [name for name in EPOCH_COLUMNS if not isinstance(row, dict) or not _is_number(row.get(name))]
        if bad:
            raise CheckpointError(f"{path} cannot be resumed: row {number} of its 'history' lacks a number for "
                                  f"{', '.join(bad)}")


def _check_rng(rng: dict[str, Any], path: Path) -> None:
    for key in ("torch", "shuffle"):
        state = rng.get(key)
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or \
                state.numel() != torch.get_rng_state().numel():
            raise CheckpointError(f"{path} cannot be resumed: its 'rng' lacks a valid '{key}' random state (a byte "
                                  f"tensor as torch.get_rng_state() returns)")


def _resume_config(checkpoint: dict[str, Any], path: Path) -> DictConfig:
    config = saved_config(checkpoint, path)
    try:
        return validate(config)
    except ConfigError as err:
        raise CheckpointError(f"{path} cannot be resumed: its 'config' is not valid today ({err}); resume it with "
                              f"the cnntrain version that started it") from None


def _check_optimizer(state: dict[str, Any], parameters: int, path: Path) -> None:
    groups = state.get("param_groups")
    if not isinstance(state.get("state"), dict) or not isinstance(groups, list) or \
            not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups):
        raise CheckpointError(f"{path} cannot be resumed: its 'optimizer' is not an optimizer state (a mapping of "
                              f"'state' and a list of 'param_groups')")
    saved = sum(len(group["params"]) for group in groups)
    if saved != parameters:
        raise CheckpointError(f"{path} cannot be resumed: its 'optimizer' holds state for {saved} parameter "
                              f"tensors, but the model has {parameters}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
