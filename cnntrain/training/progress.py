"""Where an epoch stands, and how a checkpoint taken inside it continues exactly.

A checkpoint inside an epoch (trainer.checkpoint.every_steps / every_minutes, or a stop signal) holds, besides
what an epoch's end saves (weights, EMA, optimizer, schedule, the rows so far): the epoch's number and the
batches done, the shuffle generator's state when the epoch drew its order (so the resumed epoch draws the same
order and skips what was done), and each rank's random states (dropout, augmentation) and running sums (loss,
hits, the per-batch losses that become steps.csv). Resumed on as many ranks, the epoch ends with the numbers
the uninterrupted run has, bit for bit on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnntrain.errors import CheckpointError
from cnntrain.files import kind_of

IN_EPOCH = "in_epoch"
"""The key of last.pt that holds a position inside an epoch (absent: last.pt is an epoch's end)."""


@dataclass
class EpochProgress:
    """One rank's running state of a training epoch: batches done and the sums the epoch's metrics come from."""

    batches: int
    device: torch.device
    step: int = 0  # batches done
    seen: int = 0  # this rank's images so far
    total: torch.Tensor = field(default=None)  # type: ignore[assignment]  # sum of loss x images (float64)
    hits: torch.Tensor = field(default=None)  # type: ignore[assignment]  # correct predictions (int64)
    losses: torch.Tensor = field(default=None)  # type: ignore[assignment]  # each batch's mean loss
    sizes: torch.Tensor = field(default=None)  # type: ignore[assignment]  # each global batch's images (CPU)
    counts: torch.Tensor = field(default=None)  # type: ignore[assignment]  # this rank's share of them (CPU)
    lrs: list[float] = field(default_factory=list)  # the rate each batch used

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = torch.zeros((), dtype=torch.float64, device=self.device)
            self.hits = torch.zeros((), dtype=torch.int64, device=self.device)
            self.losses = torch.zeros(self.batches, dtype=torch.float64, device=self.device)
            self.sizes = torch.zeros(self.batches, dtype=torch.float64)
            self.counts = torch.zeros(self.batches, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        """This rank's sums, on the CPU, exactly (float64 and int64 tensors)."""
        done = self.step
        return {"step": done, "seen": self.seen, "total": self.total.detach().cpu(), "hits": self.hits.cpu(),
                "losses": self.losses[:done].cpu(), "sizes": self.sizes[:done].clone(),
                "counts": self.counts[:done].clone(), "lrs": list(self.lrs)}

    @classmethod
    def from_state(cls, state: dict[str, Any], batches: int, device: torch.device) -> EpochProgress:
        progress = cls(batches, device)
        done = progress.step = int(state["step"])
        progress.seen = int(state["seen"])
        progress.total = state["total"].to(device=device, dtype=torch.float64)
        progress.hits = state["hits"].to(device=device, dtype=torch.int64)
        progress.losses[:done] = state["losses"].to(device)
        progress.sizes[:done] = state["sizes"]
        progress.counts[:done] = state["counts"]
        progress.lrs = [float(lr) for lr in state["lrs"]]
        return progress


@dataclass
class Position:
    """Where a resumed epoch starts: its number, the shuffle state its order was drawn from, this rank's sums,
    the rate it started with and the seconds it had trained."""

    epoch: int
    order_rng: torch.Tensor
    sums: dict[str, Any]
    lr: float
    seconds: float


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to continue exactly."""
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what rng_state saved, so the next shuffle and the next dropout mask are the same."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def own_rng(checkpoint: dict[str, Any], rank: int, world: int) -> dict[str, Any]:
    """This rank's saved random states when the checkpoint was written by as many ranks; otherwise rank 0's
    (the shuffle is the same on every rank; only dropout masks start from rank 0's state)."""
    per_rank = checkpoint.get("rng_per_rank")
    if isinstance(per_rank, list) and len(per_rank) == world:
        return per_rank[rank]
    return checkpoint["rng"]


def in_epoch_state(epoch: int, order_rng: torch.Tensor, lr: float, seconds: float,
                   per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """last.pt's IN_EPOCH entry: `per_rank` holds each rank's {"rng": ..., "sums": EpochProgress.state_dict()}."""
    step = per_rank[0]["sums"]["step"]
    return {"epoch": epoch, "step": step, "order_rng": order_rng, "lr": float(lr), "seconds": float(seconds),
            "world": len(per_rank), "ranks": per_rank}


def position(checkpoint: dict[str, Any], rank: int, world: int) -> tuple[Position, dict[str, Any]] | None:
    """This rank's Position and random states in a last.pt taken inside an epoch; None for an epoch's end."""
    state = checkpoint.get(IN_EPOCH)
    if state is None:
        return None
    if state["world"] != world:  # the command checks this first (check_in_epoch); a direct caller may not
        raise CheckpointError(world_message(state["world"], world))
    mine = state["ranks"][rank]
    return Position(state["epoch"], state["order_rng"], mine["sums"], state["lr"], state["seconds"]), mine["rng"]


def resumed_batches(make: Callable[[int], Iterator[Any]], generator: torch.Generator,
                    at: Position | None, rng: dict[str, Any] | None) -> Iterator[Any]:
    """The epoch's batches from `make(start)`; resumed, from the batch after the checkpoint's: the order is drawn
    from the state the epoch began with, then the generator takes the state it had at the checkpoint (the
    augmentation's numbers since). The batch iterators draw from the generator only for the order, before
    their first batch."""
    if at is None:
        yield from make(0)
        return
    generator.set_state(at.order_rng)
    batches = make(int(at.sums["step"]))
    first = next(batches, None)
    generator.set_state(rng["shuffle"])
    if first is None:
        return
    yield first
    yield from batches


def resume_point(checkpoint: dict[str, Any]) -> str:
    """Where a resume continues, in words: 'after epoch 2' or 'in epoch 3 after batch 40'."""
    state = checkpoint.get(IN_EPOCH)
    if isinstance(state, dict):
        return f"in epoch {state['epoch']} after batch {state['step']}"
    return f"after epoch {checkpoint['epoch']}"


def world_message(saved: Any, world: int) -> str:
    return (f"last.pt was saved inside an epoch by {saved} process(es); its per-rank state continues on "
            f"{saved} only: resume with trainer.devices={saved} (this resume asks for {world})")


def check_in_epoch(checkpoint: dict[str, Any], path: Path) -> None:
    """A last.pt's IN_EPOCH entry, checked as data before a resume: one line naming what is wrong."""
    state = checkpoint.get(IN_EPOCH)
    if state is None:
        return
    edited = "the file was edited or written by another program"

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path} cannot be resumed: its '{IN_EPOCH}' {what}; {edited}")

    if not isinstance(state, dict):
        raise bad(f"is {kind_of(state)}, not a mapping")
    for key, kind in (("epoch", int), ("step", int), ("world", int), ("ranks", list), ("order_rng", torch.Tensor),
                      ("lr", float), ("seconds", float)):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise bad(f"'{key}' is {kind_of(value)}")
    if state["epoch"] != checkpoint["epoch"] + 1 or state["step"] < 0 or state["world"] < 1:
        raise bad(f"position (epoch {state['epoch']}, step {state['step']}) does not follow epoch "
                  f"{checkpoint['epoch']}")
    if len(state["ranks"]) != state["world"]:
        raise bad(f"has {len(state['ranks'])} ranks' states for {state['world']} ranks")
    for mine in state["ranks"]:
        _check_rank(mine, state["step"], bad)


def check_world(checkpoint: dict[str, Any], devices: int) -> None:
    """A last.pt taken inside an epoch continues on as many ranks as wrote it (each holds its own sums)."""
    state = checkpoint.get(IN_EPOCH)
    if isinstance(state, dict) and state.get("world") != devices:
        raise CheckpointError(world_message(state.get("world"), devices))


def _check_rank(mine: Any, step: int, bad: Callable[[str], CheckpointError]) -> None:
    if not isinstance(mine, dict) or not isinstance(mine.get("rng"), dict) or not isinstance(mine.get("sums"), dict):
        raise bad("ranks' entries are not the mappings a run saves")
    sums = mine["sums"]
    tensors = ("total", "hits", "losses", "sizes", "counts")
    if sums.get("step") != step or not all(isinstance(sums.get(key), torch.Tensor) for key in tensors):
        raise bad("ranks' sums are not the tensors a run saves")
    if any(sums[key].numel() != step for key in ("losses", "sizes", "counts")) or \
            not isinstance(sums.get("lrs"), list) or len(sums["lrs"]) != step:
        raise bad(f"ranks' per-batch sums do not hold {step} batches")
    if isinstance(sums.get("seen"), bool) or not isinstance(sums.get("seen"), int):
        raise bad("ranks' image count is not a whole number")
    shuffle = mine["rng"].get("shuffle")
    if not isinstance(shuffle, torch.Tensor) or not isinstance(mine["rng"].get("torch"), torch.Tensor):
        raise bad("ranks' random states are not tensors")
