"""Who this process is in a data-parallel run, and the few collectives the training loop needs.

A run on N processes (ranks) is still one run: every rank holds the same data and the same weights, takes
its contiguous share of each global batch, and the metrics are sums over exactly the images of the split,
all-reduced, so they equal what one process would report for the same weights. One process is `SINGLE`,
and every method below is then a no-op, so the loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from cnntrain.data.batches import batch_share

RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
"""The variables torch's launchers (torchrun, the elastic agent) set, and submitit exports on SLURM."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # one of the ranks a launcher started (torchrun --nproc_per_node=1 counts: DDP on one)
    backend: str | None = None  # of the training device's tensors: gloo on CPU, nccl on CUDA; set by `start`

    @property
    def enabled(self) -> bool:
        return self.launched

    @property
    def main(self) -> bool:
        """Rank 0 writes the run directory's files and draws the progress."""
        return self.rank == 0

    def sum(self, values: list[float | torch.Tensor], device: torch.device) -> list[float]:
        """The sum over ranks of each value (one all-reduce in float64), read back once."""
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
        if self.enabled:
            torch.distributed.all_reduce(stacked)
        return stacked.tolist()

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (in place)."""
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor

    def gather(self, local: torch.Tensor, n: int, counts: list[int] | None = None) -> torch.Tensor:
        """The ranks' shares of n values, concatenated in rank order: every rank gets the whole, unpadded.
        The shares are batch_share's contiguous ones unless `counts` gives each rank's number."""
        if not self.enabled:
            return local
        if counts is None:
            sizes = [batch_share(n, r, self.world) for r in range(self.world)]
        else:
            sizes = [(sum(counts[:r]), sum(counts[: r + 1])) for r in range(self.world)]
        widest = max(hi - lo for lo, hi in sizes)
        padded = torch.zeros(widest, dtype=local.dtype, device=local.device)
        padded[: local.numel()] = local
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        torch.distributed.all_gather(pieces, padded)
        return torch.cat([piece[: hi - lo] for piece, (lo, hi) in zip(pieces, sizes)])

    def broadcast_weights(self, model: nn.Module) -> None:
        """Give every rank rank 0's weights and buffers (rank 0 may have loaded a checkpoint the others lack)."""
        if self.enabled:
            for tensor in model.state_dict().values():
                torch.distributed.broadcast(tensor, 0)

    def gather_objects(self, value: object) -> list[object]:
        """Every rank's `value`, in rank order (small things only: random-generator states)."""
        if not self.enabled:
            return [value]
        gathered: list[object] = [None] * self.world
        torch.distributed.all_gather_object(gathered, value)
        return gathered


SINGLE = Ranks()


def ranks_from_env() -> Ranks | None:
    """The ranks a launcher described in the environment (torchrun, the elastic agent, submitit's export);
    None when this process was not started as one rank of several."""
    if not all(name in os.environ for name in RANK_ENV):
        return None
    rank, world, local = (int(os.environ[name]) for name in RANK_ENV)
    return Ranks(rank, world, local, launched=True)


def threads_per_rank(ranks: Ranks) -> int:
    """CPU threads for one rank: the cores this process may use, shared by the ranks on its machine (for a lone
    process that may use every core, what torch picks in a fresh process: set explicitly, so a run started from
    Python after something changed torch's thread count computes as the command does)."""
    if not ranks.enabled:
        cores = available_cores()
        return cores if cores < (os.cpu_count() or cores) else fresh_process_threads()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world))
    return max(1, available_cores() // local_world)


def fresh_process_threads() -> int:
    """torch's intra-op thread count at start-up: OMP_NUM_THREADS or MKL_NUM_THREADS, else the machine's
    physical cores (its logical CPUs where the cores cannot be counted), as ATen's intraop_default_num_threads."""
    for name in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            blocks = info.read().split("\n\n")
    except OSError:
        return os.cpu_count() or 1
    processors = [b for b in blocks if _field(b, "processor")]
    cores = {(_field(b, "physical id"), _field(b, "core id")) for b in processors}
    counted = all(_field(b, "core id") for b in processors)
    return len(cores) if counted and 0 < len(cores) < len(processors) else (len(processors) or os.cpu_count() or 1)


def _field(block: str, name: str) -> str:
    for line in block.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, which a cluster's scheduler sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_group_backends() -> str:
    """gloo for CPU tensors, and nccl for CUDA tensors where there is CUDA: one group serves a run on either
    device, and the job's config can travel to the ranks (over gloo) before they know which it is."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank on a CUDA machine takes the GPU of its local rank (of those it can see)."""
    if ranks.enabled and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return device


def start(ranks: Ranks, device: torch.device | None = None) -> Ranks:
    """Join the process group (the launcher's rendezvous variables say where), once; returns the ranks with the
    backend that carries `device`'s tensors."""
    if not ranks.enabled:
        return ranks
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(process_group_backends(), rank=ranks.rank, world_size=ranks.world)
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    return Ranks(ranks.rank, ranks.world, ranks.local_rank, True, backend)


def share_object(value: object) -> object:
    """Rank 0's `value` on every rank (the others pass None): a job's config, composed once."""
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def wait_for_all() -> None:
    """A barrier: the ranks of a finished run leave together. A rank that tore its process group down while rank 0
    still wrote the report (summary, analysis, page) was seen to abort in gloo ('terminate called without an
    active exception', exit -6) on a loaded machine."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def stop() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(model: nn.Module, ranks: Ranks, device: torch.device, *, sync_batchnorm: bool) -> nn.Module:
    """The module that trains: DistributedDataParallel over `model` (which keeps the plain weights)."""
    if not ranks.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
