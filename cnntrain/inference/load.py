"""Open a finished run directory: its config, a checkpoint and the rebuilt model, ready for inference.

`cnntrain-eval`, `cnntrain-predict`, `cnntrain-export` and `cnntrain.Run` all start here, so they agree on which
checkpoint `best`/`last` means, on how inputs are shaped and normalised (the data description the checkpoint
holds) and on the run's task (cnntrain.training.tasks), which carries a multi-label run's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnntrain.config.names import CHECKPOINT_NAMES
from cnntrain.config.saved import local_destinations
from cnntrain.data.description import DataDescription, normalize
from cnntrain.errors import CheckpointError, UserError
from cnntrain.files import kind_of
from cnntrain.models.builder import ends_with_log_softmax
from cnntrain.reporting.run_dir import RunDir
from cnntrain.training.checkpoints import load_checkpoint
from cnntrain.training.saved_run import EDITED, saved_config, saved_description, saved_model
from cnntrain.training.tasks import Task, task_for


@dataclass
class SavedRun:
    """A run directory's model in eval mode, plus what its inputs must look like and the task it learned."""

    run_dir: Path
    checkpoint_path: Path
    config: DictConfig
    model: nn.Module
    description: DataDescription
    mean: torch.Tensor  # float32 [1, C, 1, 1] on the model's device
    std: torch.Tensor
    epoch: int
    task: Task  # one class or a set of labels per image; a multi-label task holds the saved thresholds
    not_taken: tuple[str, ...] = ()  # the checkpoint's own destinations, replaced by this machine's defaults

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label run's per-label decision thresholds, as the run saved them; None for one class per image."""
        return list(self.task.thresholds) or None

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


def load_run(run_dir: str | Path, checkpoint: str = "best", device: torch.device | str = "cpu") -> SavedRun:
    """Rebuild the model of a run from its checkpoint; raise a UserError naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    path = checkpoint_path(run_dir, checkpoint)
    if checkpoint in CHECKPOINT_NAMES and not path.is_file():
        raise UserError(
            f"{run_dir} has no checkpoints/{checkpoint}.pt; is it a cnntrain run directory? "
            f"(--checkpoint takes {' or '.join(CHECKPOINT_NAMES)} or a path to a .pt file)"
        )
    payload = load_checkpoint(path, map_location="cpu")
    config = saved_config(payload, path)
    description = saved_description(payload, config, path)
    model = saved_model(payload, config, description, path)
    model.to(device).eval()
    mean, std = description.stats(device)
    return SavedRun(
        run_dir=run_dir,
        checkpoint_path=path,
        config=config,
        model=model,
        description=description,
        mean=mean,
        std=std,
        epoch=_epoch(payload, path),
        task=saved_task(payload, config, description, path),
        not_taken=tuple(local_destinations(payload["config"])[1]),  # a mapping: saved_config checked it
    )


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """`best` / `last` name a checkpoint of the run; anything else is a path to a .pt file."""
    if checkpoint in CHECKPOINT_NAMES:
        return RunDir(run_dir).checkpoint(checkpoint)
    return Path(checkpoint)


def saved_task(payload: dict[str, Any], config: DictConfig, description: DataDescription, path: Path) -> Task:
    """The task of the checkpoint's data; a multi-label one with the checkpoint's per-label thresholds (checkpoints
    without them: trainer.threshold for every label, 0.5 when that was tune)."""
    task = task_for(description.task, num_classes=description.num_classes)
    if not task.thresholds:
        return task
    saved = payload.get("thresholds")
    if saved is None:
        fixed = OmegaConf.select(config, "trainer.threshold", default=0.5)
        saved = [fixed if isinstance(fixed, float) else 0.5] * description.num_classes
    elif (
        not isinstance(saved, list)
        or len(saved) != description.num_classes
        or not all(isinstance(t, float) and 0.0 < t < 1.0 for t in saved)
    ):
        raise CheckpointError(
            f"{path}: its 'thresholds' are not {description.num_classes} probabilities in (0, 1), "
            f"one per label; {EDITED}"
        )
    task.restore({"thresholds": list(saved)})
    return task


def _epoch(payload: dict[str, Any], path: Path) -> int:
    epoch = payload.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"{path}: its 'epoch' is {kind_of(epoch)}, not a whole number; {EDITED}")
    return epoch
