"""Open a finished run directory: its config, a checkpoint and the rebuilt model, ready for inference.

`cnntrain-eval`, `cnntrain-predict` and `cnntrain-export` all start here, so they agree on which
checkpoint `best`/`last` means and on how inputs are shaped and normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cnntrain.checkpoint import load_checkpoint
from cnntrain.data import normalize
from cnntrain.errors import UserError
from cnntrain.model import build_model

CHECKPOINT_NAMES = ("best", "last")


@dataclass
class SavedRun:
    """A run directory's model in eval mode, plus what its inputs must look like."""

    run_dir: Path
    checkpoint_path: Path
    config: DictConfig
    model: nn.Module
    input_shape: tuple[int, int, int]
    classes: list[str]
    mean: torch.Tensor  # float32 [1, C, 1, 1]
    std: torch.Tensor
    epoch: int

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(images_uint8, self.mean.to(images_uint8.device), self.std.to(images_uint8.device))

    @property
    def outputs_log_probs(self) -> bool:
        from cnntrain.model import ends_with_log_softmax

        return ends_with_log_softmax(self.config.model.layers)

    @property
    def tta(self) -> str:
        """The run's test-time augmentation (runs saved before trainer.tta existed used none)."""
        return str(self.config.trainer.get("tta", "none"))


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """`best` / `last` name a checkpoint of the run; anything else is a path to a .pt file."""
    if checkpoint in CHECKPOINT_NAMES:
        return run_dir / "checkpoints" / f"{checkpoint}.pt"
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
    data = _data_description(payload, config)
    shape = tuple(int(d) for d in data["input_shape"])
    model, _ = build_model(config.model.layers, shape, model_name=str(config.model.name))
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    channels = shape[0]
    return SavedRun(
        run_dir=run_dir, checkpoint_path=path, config=config, model=model, input_shape=shape,
        classes=[str(c) for c in data["classes"]],
        mean=torch.tensor(data["mean"], dtype=torch.float32).view(1, channels, 1, 1).to(device),
        std=torch.tensor(data["std"], dtype=torch.float32).view(1, channels, 1, 1).to(device),
        epoch=int(payload.get("epoch", 0)),
    )


def _data_description(payload: dict[str, Any], config: DictConfig) -> dict[str, Any]:
    """Checkpoints record the input shape and classes the data gave; fall back to the config's."""
    if "data" in payload:
        return payload["data"]
    ds = config.dataset
    return {"input_shape": list(ds.input_shape), "classes": list(ds.classes), "mean": list(ds.mean),
            "std": list(ds.std)}
