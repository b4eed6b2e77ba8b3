"""What a checkpoint holds, read back and checked: its config, its data description and the model they rebuild.

Opening a finished run (cnntrain.inference.load) and resuming one both read checkpoints through here, so a
damaged or edited file is one line naming the key, whichever way it is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cnntrain.config.saved import saved_config_data
from cnntrain.data.description import DataDescription
from cnntrain.errors import CheckpointError, ModelConfigError, first_line
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
        raise CheckpointError(
            f"{path}: its 'config' is {kind_of(payload['config'])}, not the mapping a run saves; {EDITED}"
        )
    try:
        config = OmegaConf.create(saved_config_data(payload["config"], f"{path}: its 'config'", fix=EDITED))
        OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as err:
        raise CheckpointError(f"{path}: its 'config' cannot be read ({first_line(err)}); {EDITED}") from None
    if not isinstance(OmegaConf.select(config, "model.layers"), ListConfig):
        raise CheckpointError(
            f"{path}: its 'config' has no model.layers list, so the model cannot be rebuilt; {EDITED}"
        )
    return config


def saved_description(payload: dict[str, Any], config: DictConfig, path: Path) -> DataDescription:
    """Checkpoints record the input shape, classes and statistics the data gave; older ones only the config."""
    where = "its 'data'" if "data" in payload else "its config's dataset (it holds no 'data')"
    source = payload["data"] if "data" in payload else OmegaConf.select(config, "dataset")
    if isinstance(source, DictConfig):
        source = OmegaConf.to_container(source, resolve=True)
    if not isinstance(source, dict):
        raise CheckpointError(
            f"{path}: {where} is {kind_of(source)}, not a mapping of input_shape, classes, mean and std; {EDITED}"
        )
    missing = [key for key in DESCRIPTION_KEYS if source.get(key) is None]
    if missing:
        raise CheckpointError(
            f"{path}: {where} lacks {', '.join(missing)}, so inputs cannot be shaped and "
            f"normalised as in training; use a checkpoint written by a complete run"
        )
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


def _check_description(description: DataDescription, where: str, path: Path) -> None:
    channels = description.input_shape[0] if len(description.input_shape) == 3 else 0
    if len(description.input_shape) != 3 or min(description.input_shape) < 1:
        raise CheckpointError(
            f"{path}: {where} has input_shape {list(description.input_shape)}; expected three "
            f"positive sizes [channels, height, width]; {EDITED}"
        )
    for name, values in (("mean", description.mean), ("std", description.std)):
        if len(values or []) != channels:
            raise CheckpointError(
                f"{path}: {where} has {len(values or [])} {name} values for {channels} "
                f"channel{'' if channels == 1 else 's'}; {EDITED}"
            )
    if not description.classes:
        raise CheckpointError(f"{path}: {where} has no classes; {EDITED}")
