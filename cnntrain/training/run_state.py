"""A run's state: what checkpoints/last.pt and best.pt hold, written and read by one type, and checked before a
resume.

Every checkpoint a run writes is a `RunState`: at an epoch's end (last.pt, and best.pt on improvement) and inside
an epoch (last.pt with its `in_epoch` position, see cnntrain.training.progress). The file is a plain dict whose keys
are the field names below, in their order; an optional field is written only when set, so a file from before it
existed reads the same. `check_resume` reads a last.pt as data (someone else's file may be damaged or edited) and
names the first bad value in one line before the run starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cnntrain.config.names import EPOCH_COLUMNS, MODES, MONITORS
from cnntrain.config.validate import validate
from cnntrain.errors import CheckpointError, ConfigError
from cnntrain.files import kind_of
from cnntrain.training.checkpoints import save_checkpoint
from cnntrain.training.progress import Position
from cnntrain.training.saved_run import saved_config, saved_description, saved_model

IN_EPOCH = "in_epoch"
"""The key of last.pt that holds a position inside an epoch (absent: last.pt is an epoch's end)."""
RESUME_KEYS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": (dict, type(None)),
    "best": dict,
    "early_stopping": dict,
    "rng": dict,
    "history": list,
    "config": dict,
}
"""What last.pt must hold for a resume, and the type of each value."""
EDITED = "the file was edited or written by another program"


@dataclass
class MetricWatch:
    """Tracks the best value of one metric; serves both early stopping and the best checkpoint."""

    monitor: str
    mode: str
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Record this epoch's value; True when it is an improvement (by more than min_delta)."""
        value = metrics[self.monitor]
        if self.best is None:
            improved = math.isfinite(value)
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved


@dataclass
class RunState:
    """One checkpoint's training state. `model` holds the weights that are evaluated, tested and exported (with a
    weight average, the average; training goes on from `train_weights`, the average from `ema`)."""

    epoch: int  # epochs finished
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    best: MetricWatch  # the checkpoint metric: which epoch best.pt holds
    early_stopping: MetricWatch
    rng: dict[str, Any]  # the random states (cnntrain.training.progress.rng_state)
    metrics: dict[str, Any] | None  # the row of `epoch` (None: inside the first epoch)
    history: list[dict[str, Any]]  # the rows of every finished epoch
    config: dict[str, Any] | None = None  # the run's resolved config, which a resume continues with
    data: dict[str, Any] | None = None  # the data description (input shape, classes, mean/std)
    thresholds: list[float] | None = None  # multi-label: the decision thresholds these weights are tested with
    train_weights: dict[str, Any] | None = None
    ema: dict[str, Any] | None = None
    rng_per_rank: list[dict[str, Any]] | None = None  # an epoch's end of a data-parallel run: each rank's `rng`
    in_epoch: dict[str, Any] | None = None  # the position inside an epoch (see in_epoch_state)

    def payload(self) -> dict[str, Any]:
        """The checkpoint's dict: the fields up to `history` always, the later ones only when set."""
        state: dict[str, Any] = {}
        for entry in fields(self):
            value = getattr(self, entry.name)
            if isinstance(value, MetricWatch):
                value = asdict(value)
            if entry.default is MISSING or value is not None:
                state[entry.name] = value
        return state

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> RunState:
        """The state a checkpoint holds (checked first, for a resume, by check_resume)."""
        values = {entry.name: payload.get(entry.name) for entry in fields(cls)}
        values["best"], values["early_stopping"] = (
            MetricWatch(**payload["best"]),
            MetricWatch(**payload["early_stopping"]),
        )
        return cls(**values)

    def save(self, path: Path, root: Path) -> None:
        """Write this state to `path` (checkpoints/last.pt or best.pt), whole, inside the run directory `root`."""
        save_checkpoint(path, self.payload(), root=root)

    def position(self, rank: int, world: int) -> tuple[Position, dict[str, Any]] | None:
        """This rank's Position and random states in a state taken inside an epoch; None for an epoch's end."""
        state = self.in_epoch
        if state is None:
            return None
        if state["world"] != world:  # the command checks this first (check_world); a direct caller may not
            raise CheckpointError(world_message(state["world"], world))
        mine = state["ranks"][rank]
        return Position(state["epoch"], state["order_rng"], mine["sums"], state["lr"], state["seconds"]), mine["rng"]

    def own_rng(self, rank: int, world: int) -> dict[str, Any]:
        """This rank's saved random states when the state was written by as many ranks; otherwise rank 0's
        (the shuffle is the same on every rank; only dropout masks start from rank 0's state)."""
        per_rank = self.rng_per_rank
        if isinstance(per_rank, list) and len(per_rank) == world:
            return per_rank[rank]
        return self.rng


def in_epoch_state(
    epoch: int, order_rng: torch.Tensor, lr: float, seconds: float, per_rank: list[dict[str, Any]]
) -> dict[str, Any]:
    """RunState.in_epoch: `per_rank` holds each rank's {"rng": ..., "sums": EpochProgress.state_dict()}."""
    step = per_rank[0]["sums"]["step"]
    return {
        "epoch": epoch,
        "step": step,
        "order_rng": order_rng,
        "lr": float(lr),
        "seconds": float(seconds),
        "world": len(per_rank),
        "ranks": per_rank,
    }


def resume_point(checkpoint: Mapping[str, Any]) -> str:
    """Where a resume of this checkpoint continues, in words: 'after epoch 2' or 'in epoch 3 after batch 40'."""
    state = checkpoint.get(IN_EPOCH)
    if isinstance(state, dict):
        return f"in epoch {state['epoch']} after batch {state['step']}"
    return f"after epoch {checkpoint['epoch']}"


def world_message(saved: Any, world: int) -> str:
    return (
        f"last.pt was saved inside an epoch by {saved} process(es); its per-rank state continues on "
        f"{saved} only: resume with trainer.devices={saved} (this resume asks for {world})"
    )


def check_world(checkpoint: Mapping[str, Any], devices: int) -> None:
    """A last.pt taken inside an epoch continues on as many ranks as wrote it (each holds its own sums)."""
    state = checkpoint.get(IN_EPOCH)
    if isinstance(state, dict) and state.get("world") != devices:
        raise CheckpointError(world_message(state.get("world"), devices))


def check_resume(checkpoint: dict[str, Any], path: Path) -> None:
    """A last.pt's training state, checked value by value before a resume starts: a damaged or edited file is one
    line naming the key now, not a traceback once the run is under way."""
    missing = sorted(set(RESUME_KEYS) - set(checkpoint))
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it lacks {', '.join(missing)}")
    for key, expected in RESUME_KEYS.items():
        value = checkpoint[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise CheckpointError(
                f"{path} cannot be resumed: its '{key}' is {kind_of(value)}, not {_type_words(expected)}; {EDITED}"
            )
    if checkpoint["epoch"] < (0 if IN_EPOCH in checkpoint else 1):  # inside the first epoch: none finished
        raise CheckpointError(f"{path} cannot be resumed: its 'epoch' is {checkpoint['epoch']}, not a finished epoch")
    for key in ("best", "early_stopping"):
        problem = _watch_problem(checkpoint[key])
        if problem:
            raise CheckpointError(f"{path} cannot be resumed: its '{key}' {problem}")
    _check_history(checkpoint["history"], path)
    _check_rng(checkpoint["rng"], path)
    config = _resume_config(checkpoint, path)
    model = saved_model(checkpoint, config, saved_description(checkpoint, config, path), path)
    _check_optimizer(checkpoint["optimizer"], sum(1 for _ in model.parameters()), path)
    _check_in_epoch(checkpoint, path)


def _type_words(expected: type | tuple[type, ...]) -> str:
    words = {int: "a whole number", dict: "a mapping", list: "a list", type(None): "null"}
    options = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(words.get(option, option.__name__) for option in options)


def _watch_problem(state: dict[str, Any]) -> str:
    """What is wrong with a saved MetricWatch ('best', 'early_stopping'): which metric, which way, values so far."""
    allowed = [entry.name for entry in fields(MetricWatch)]
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
            raise CheckpointError(
                f"{path} cannot be resumed: row {number} of its 'history' lacks a number for {', '.join(bad)}"
            )


def _check_rng(rng: dict[str, Any], path: Path) -> None:
    for key in ("torch", "shuffle"):
        state = rng.get(key)
        if (
            not isinstance(state, torch.Tensor)
            or state.dtype != torch.uint8
            or state.numel() != torch.get_rng_state().numel()
        ):
            raise CheckpointError(
                f"{path} cannot be resumed: its 'rng' lacks a valid '{key}' random state (a byte "
                f"tensor as torch.get_rng_state() returns)"
            )


def _resume_config(checkpoint: dict[str, Any], path: Path) -> DictConfig:
    config = saved_config(checkpoint, path)
    try:
        return validate(config)
    except ConfigError as err:
        raise CheckpointError(
            f"{path} cannot be resumed: its 'config' is not valid today ({err}); resume it with "
            f"the cnntrain version that started it"
        ) from None


def _check_optimizer(state: dict[str, Any], parameters: int, path: Path) -> None:
    groups = state.get("param_groups")
    if (
        not isinstance(state.get("state"), dict)
        or not isinstance(groups, list)
        or not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups)
    ):
        raise CheckpointError(
            f"{path} cannot be resumed: its 'optimizer' is not an optimizer state (a mapping of "
            f"'state' and a list of 'param_groups')"
        )
    saved = sum(len(group["params"]) for group in groups)
    if saved != parameters:
        raise CheckpointError(
            f"{path} cannot be resumed: its 'optimizer' holds state for {saved} parameter "
            f"tensors, but the model has {parameters}"
        )


def _check_in_epoch(checkpoint: dict[str, Any], path: Path) -> None:
    """A last.pt's IN_EPOCH entry, checked as data: one line naming what is wrong."""
    state = checkpoint.get(IN_EPOCH)
    if state is None:
        return

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} cannot be resumed: its '{IN_EPOCH}' {what}; {EDITED}")

    if not isinstance(state, dict):
        raise bad(f"is {kind_of(state)}, not a mapping")
    for key, kind in (
        ("epoch", int),
        ("step", int),
        ("world", int),
        ("ranks", list),
        ("order_rng", torch.Tensor),
        ("lr", float),
        ("seconds", float),
    ):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise bad(f"'{key}' is {kind_of(value)}")
    if state["epoch"] != checkpoint["epoch"] + 1 or state["step"] < 0 or state["world"] < 1:
        raise bad(
            f"position (epoch {state['epoch']}, step {state['step']}) does not follow epoch {checkpoint['epoch']}"
        )
    if len(state["ranks"]) != state["world"]:
        raise bad(f"has {len(state['ranks'])} ranks' states for {state['world']} ranks")
    for mine in state["ranks"]:
        _check_rank(mine, state["step"], bad)


def _check_rank(mine: Any, step: int, bad: Callable[[str], CheckpointError]) -> None:
    if not isinstance(mine, dict) or not isinstance(mine.get("rng"), dict) or not isinstance(mine.get("sums"), dict):
        raise bad("ranks' entries are not the mappings a run saves")
    sums = mine["sums"]
    tensors = ("total", "hits", "losses", "sizes", "counts")
    if sums.get("step") != step or not all(isinstance(sums.get(key), torch.Tensor) for key in tensors):
        raise bad("ranks' sums are not the tensors a run saves")
    if (
        any(sums[key].numel() != step for key in ("losses", "sizes", "counts"))
        or not isinstance(sums.get("lrs"), list)
        or len(sums["lrs"]) != step
    ):
        raise bad(f"ranks' per-batch sums do not hold {step} batches")
    if isinstance(sums.get("seen"), bool) or not isinstance(sums.get("seen"), int):
        raise bad("ranks' image count is not a whole number")
    shuffle = mine["rng"].get("shuffle")
    if not isinstance(shuffle, torch.Tensor) or not isinstance(mine["rng"].get("torch"), torch.Tensor):
        raise bad("ranks' random states are not tensors")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
