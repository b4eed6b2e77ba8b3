"""How cnntrain-bench times a model, the same way for every format: a callable float32 images -> outputs.

Latency is one image (batch 1) per call, p50 and p95 over `runs` calls after a warm-up; throughput is images per
second at a batch of 32 over a tenth as many calls (at least 3). Formats are measured round by round, so load on
a shared machine moves every row alike; each row keeps its best round. The eager rows' callables (float32, bf16
autocast where the CPU has it in hardware) are made here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cnntrain.reporting.provenance import cpu

Runner = Callable[[np.ndarray], np.ndarray]
WARMUP = 3  # calls before any is timed: lazy allocations, a runtime's first-call kernels
BATCH = 32  # the throughput batch
ROUNDS = 2  # passes over every format; the best of them is kept
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")  # CPU flags of bf16 arithmetic in hardware


@dataclass
class Timing:
    """One format's figures: milliseconds per image at batch 1, images per second at a batch of BATCH."""

    p50_ms: float = float("inf")
    p95_ms: float = float("inf")
    throughput: float = 0.0

    def keep_best(self, other: Timing) -> None:
        self.p50_ms = min(self.p50_ms, other.p50_ms)
        self.p95_ms = min(self.p95_ms, other.p95_ms)
        self.throughput = max(self.throughput, other.throughput)


def latency(run: Runner, image: np.ndarray, runs: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of `runs` calls on one image, after WARMUP calls."""
    for _ in range(WARMUP):
        run(image)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        run(image)
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 95)) * 1e3


def throughput(run: Runner, batch: np.ndarray, calls: int) -> float:
    """Images per second over `calls` calls on `batch`, after one warm-up call."""
    run(batch)
    start = time.perf_counter()
    for _ in range(calls):
        run(batch)
    return calls * len(batch) / (time.perf_counter() - start)


def measure(run: Runner, one: np.ndarray, batch: np.ndarray, runs: int) -> Timing:
    """One round of both figures for one format."""
    p50, p95 = latency(run, one, runs)
    return Timing(p50, p95, throughput(run, batch, max(3, runs // 10)))


def timed(step: Callable[[], object]) -> tuple[object, float]:
    """(what `step` returns, the seconds it took): a file's load time, a compile's first calls."""
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def batch_of(images: np.ndarray, size: int = BATCH) -> np.ndarray:
    """`size` images, the split's first ones repeated when it has fewer."""
    return np.resize(images, (size, *images.shape[1:]))


def torch_runner(module: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype | None = None) -> Runner:
    """float32 numpy images -> numpy outputs through a torch module (in bf16 autocast when `dtype` says so)."""

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return module(torch.from_numpy(images)).float().numpy()

    return run


def no_native_bf16() -> str:
    """Why eager bf16 is not measured here ('' where the CPU computes bf16 in hardware)."""
    facts = cpu()
    flags = facts.get("isa_flags") or []
    if any(flag in flags for flag in NATIVE_BF16):
        return ""
    return (
        f"the CPU ({facts.get('capability')}) has no native bf16 ({' or '.join(NATIVE_BF16)} not among its flags): "
        f"autocast would emulate it, slower than float32"
    )
