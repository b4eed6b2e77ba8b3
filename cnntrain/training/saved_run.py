"""Open a finished run directory: its config, a checkpoint and the rebuilt model, ready for inference.

`cnntrain-eval`, `cnntrain-predict` and `cnntrain-export` all start here, so they agree on which
checkpoint `best`/`last` means and on how inputs are shaped and normalised (the data description the
checkpoint holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cnntrain.config.names import CHECKPOINT_NAMES
from cnntrain.config.saved import saved_config_data
from cnntrain.data.description import DataDescription, normalize
from cnntrain.errors import CheckpointError, ModelConfigError, UserError, first_line
from cnntrain.files import kind_of
from cnntrain.models.architectures import saved_weights
from cnntrain.models.builder import build_model, ends_with_log_softmax
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.checkpoints import load_checkpoint, load_weights

DESCRIPTION_KEYS = ("input_shape", "classes", "mean", "std")
EDITED = "the file was edited or written by another program"  # how most messages here end: the fix is another file


@dataclass
class SavedRun:
    """A run directory's model in eval mode, plus what its inputs must look like."""

    run_dir: Path
    checkpoint_path: Path
    config: DictConfig
    model: nn.Module
    description: DataDescription
    mean: torch.Tensor  # float32 [1, C, 1, 1] on the model's device
    std: torch.Tensor
    epoch: int
    thresholds: list[float] | None = None  # multi-label: each label's decision threshold, as the run saved it

    @property
    def task(self) -> str:
        return self.description.task

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.description.input_shape

    @property
    def classes(self) -> list[str]:
        return self.description.classes

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8, self.mean.to(images_uint8.device), self.std.to(images_uint8.device))

    @property
    def outputs_log_probs(self) -> bool:
        return ends_with_log_softmax(self.config.model.layers)

    @property
    def resize(self) -> str:
        """How the run fitted image files to its input size (runs saved before dataset.resize existed stretched)."""
        return str(OmegaConf.select(self.config, "dataset.resize", default="stretch") or "stretch")

    @property
    def tta(self) -> str:
        """The run's test-time augmentation (runs saved before trainer.tta existed used none)."""
        return str(OmegaConf.select(self.config, "trainer.tta", default="none"))


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """`best` / `last` name a checkpoint of the run; anything else is a path to a .pt file."""
    if checkpoint in CHECKPOINT_NAMES:
        return RunDir(run_dir).checkpoint(checkpoint)
    return Path(checkpoint)


def load_run(run_dir: str | Path, checkpoint: str = "best", device: torch.device | str = "cpu") -> SavedRun:
    """Rebuild the model of a run from its checkpoint; raise a UserError naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    path = checkpoint_path(run_dir, checkpoint)
    if checkpoint in CHECKPOINT_NAMES and not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/{checkpoint}.pt; is it a cnntrain run directory? "
                        f"(--checkpoint takes {' or '.join(CHECKPOINT_NAMES)} or a path to a .pt file)")
    payload = load_checkpoint(path, map_location="cpu")
    config = saved_config(payload, path)
    description = saved_description(payload, config, path)
    model = saved_model(payload, config, description, path)
    model.to(device).eval()
    mean, std = description.stats(device)
    return SavedRun(run_dir=run_dir, checkpoint_path=path, config=config, model=model, description=description,
                    mean=mean, std=std, epoch=_epoch(payload, path),
                    thresholds=saved_thresholds(payload, config, description, path))


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


def saved_thresholds(payload: dict[str, Any], config: DictConfig, description: DataDescription, path: Path
                     ) -> list[float] | None:
    """A multi-label checkpoint's per-label thresholds (checkpoints without them: trainer.threshold for every label,
    0.5 when that was tune); None for one class per image."""
    if description.task != "multilabel":
        return None
    saved = payload.get("thresholds")
    if saved is None:
        fixed = OmegaConf.select(config, "trainer.threshold", default=0.5)
        return [fixed if isinstance(fixed, float) else 0.5] * description.num_classes
    if not isinstance(saved, list) or len(saved) != description.num_classes or not all(
            isinstance(t, float) and 0.0 < t < 1.0 for t in saved):
        raise CheckpointError(f"{path}: its 'thresholds' are not {description.num_classes} probabilities in (0, 1), "
                              f"one per label; {EDITED}")
    return list(saved)


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
        raise CheckpointError(f"{path}: {where} has input_shape {list(description.input_shape)}; expected three "
                              f"positive sizes [channels, height, width]; {EDITED}")
    for name, values in (("mean", description.mean), ("std", description.std)):
        if len(values or []) != channels:
            raise CheckpointError(f"{path}: {where} has {len(values or [])} {name} values for {channels} "
                                  f"channel{'' if channels == 1 else 's'}; {EDITED}")
    if not description.classes:
        raise CheckpointError(f"{path}: {where} has no classes; {EDITED}")


def _epoch(payload: dict[str, Any], path: Path) -> int:
    epoch = payload.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"{path}: its 'epoch' is {kind_of(epoch)}, not a whole number; {EDITED}")
    return epoch
