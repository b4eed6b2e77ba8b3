"""Where an epoch stands, and how a checkpoint taken inside it continues exactly.

A checkpoint inside an epoch (trainer.checkpoint.every_steps / every_minutes, or a stop signal) holds, besides
what an epoch's end saves (weights, EMA, optimizer, schedule, the rows so far): the epoch's number and the
batches done, the shuffle generator's state when the epoch drew its order (so the resumed epoch draws the same
order and skips what was done), and each rank's random states (dropout, augmentation) and running sums (loss,
hits, the per-batch losses that become steps.csv). Resumed on as many ranks, the epoch ends with the numbers
the uninterrupted run has, bit for bit on the CPU. This module holds those sums and random states and replays the
epoch's order; cnntrain.training.run_state writes and reads them in the checkpoint (`RunState.in_epoch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


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
        return {
            "step": done,
            "seen": self.seen,
            "total": self.total.detach().cpu(),
            "hits": self.hits.cpu(),
            "losses": self.losses[:done].cpu(),
            "sizes": self.sizes[:done].clone(),
            "counts": self.counts[:done].clone(),
            "lrs": list(self.lrs),
        }

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


def resumed_batches(
    make: Callable[[int], Iterator[Any]], generator: torch.Generator, at: Position | None, rng: dict[str, Any] | None
) -> Iterator[Any]:
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
