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
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnntrain.config.names import CHECKPOINT_NAMES
from cnntrain.data.description import DataDescription, normalize
from cnntrain.errors import UserError
from cnntrain.models.builder import build_model, ends_with_log_softmax
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.checkpoints import load_checkpoint


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
    def tta(self) -> str:
        """The run's test-time augmentation (runs saved before trainer.tta existed used none)."""
        return str(self.config.trainer.get("tta", "none"))


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
    if "config" not in payload:
        raise UserError(f"{path} holds no config; it was not written by a cnntrain run")
    config = OmegaConf.create(payload["config"])
    description = _description(payload, config)
    model, _ = build_model(config.model.layers, description.input_shape, model_name=str(config.model.name))
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    mean, std = description.stats(device)
    return SavedRun(run_dir=run_dir, checkpoint_path=path, config=config, model=model, description=description,
                    mean=mean, std=std, epoch=int(payload.get("epoch", 0)))


def _description(payload: dict[str, Any], config: DictConfig) -> DataDescription:
    """Checkpoints record the input shape, classes and statistics the data gave; older ones only the config."""
    return DataDescription.from_dict(payload["data"] if "data" in payload else config.dataset)
