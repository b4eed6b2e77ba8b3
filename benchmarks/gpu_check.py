"""GPU checklist: what to run, in one go, on any machine with a CUDA GPU; prints one table.

1. the CUDA-only tests (pytest -m cuda: data on the GPU, DDP over nccl, parallel jobs sharing a GPU);
2. the epoch-throughput benchmark for the speedrun net (compute bound vs the cnntrain epoch, b/a);
3. `cnntrain experiment=mnist-speedrun device=cuda` with 5 seeds (test accuracy, training seconds);
4. the same run as a 1-GPU DDP run started by torchrun (nccl);
5. the start-up-to-finish wall time of one speedrun command;
6. a parallel sweep of 4 speedrun jobs, 2 at a time sharing the GPU (sweep.jobs_per_gpu=2), with the joblib
   extra: later jobs land in reused workers and run in fresh processes.

    python benchmarks/gpu_check.py --data-root ../shared/data
    python benchmarks/gpu_check.py --data-root DATA --seeds 5 --skip-tests

The table is Markdown, ready for docs/gpus.md ("GPU figures"), with the GPU's name and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEEDRUN = ["experiment=mnist-speedrun", "device=cuda", "trainer.progress=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw (CNNTRAIN_DATA_ROOT)")
    parser.add_argument("--seeds", type=int, default=5, help="speedrun seeds (default 5)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the CUDA-only tests")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; this checklist needs one")
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(args.data_root.resolve()), "PYTHONUNBUFFERED": "1"}
    rows: list[tuple[str, str]] = []
    if not args.skip_tests:
        rows.append(("CUDA-only tests (pytest -m cuda)", _tests(env)))
    rows.append(("epoch throughput, speedrun-cnn batch 128 (b/a)", _throughput(env)))
    with tempfile.TemporaryDirectory() as scratch:
        runs = [
            _cnntrain([sys.executable, "-m", "cnntrain"], [f"seed={seed}"], env, Path(scratch) / f"s{seed}")
            for seed in range(args.seeds)
        ]
        accs = [100 * r["acc"] for r in runs]
        trains = [r["train"] for r in runs]
        rows.append(
            (
                f"mnist-speedrun, {args.seeds} seeds: test acc %",
                f"mean {statistics.mean(accs):.2f}, min {min(accs):.2f}, max {max(accs):.2f} "
                f"({', '.join(f'{a:.2f}' for a in accs)})",
            )
        )
        rows.append(
            (
                f"mnist-speedrun, {args.seeds} seeds: train s",
                f"median {statistics.median(trains):.2f} (min {min(trains):.2f}, max {max(trains):.2f})",
            )
        )
        rows.append(
            ("mnist-speedrun: whole command wall s (median)", f"{statistics.median(r['wall'] for r in runs):.2f}")
        )
        ddp = _cnntrain(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "cnntrain"],
            [],
            env,
            Path(scratch) / "ddp",
        )
        rows.append(
            (
                "torchrun --nproc_per_node=1 mnist-speedrun (DDP)",
                f"backend {ddp['backend']}, world {ddp['world']}, test acc {100 * ddp['acc']:.2f}%, "
                f"train {ddp['train']:.2f} s",
            )
        )
        rows.append(("parallel sweep: 4 speedrun jobs, 2 at once on one GPU", _parallel(env, Path(scratch) / "sweep")))
    print(
        f"\nGPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print("| check | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _parallel(env: dict[str, str], sweep_dir: Path) -> str:
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        return "skipped: pip install 'cnntrain[joblib]'"
    command = [
        sys.executable,
        "-m",
        "cnntrain",
        "-m",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        "sweep.jobs_per_gpu=2",
        *SPEEDRUN,
        "seed=0,1,2,3",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(result.stdout[-3000:], result.stderr[-3000:], flush=True)
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    done = [s for s in summaries if s.get("status") == "done"]
    accs = ", ".join(f"{100 * s['test']['acc']:.2f}" for s in done)
    return (
        f"exit {result.returncode}, {len(done)} of 4 done, devices "
        f"{sorted({s.get('device', '?') for s in done})}, test acc {accs}%, sweep wall {wall:.1f} s"
    )


def _tests(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    print(result.stdout[-3000:], result.stderr[-2000:], flush=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr.strip()[-200:]
    return re.sub(r"=+", "", summary).strip()


def _throughput(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "epoch_throughput.py"), "experiment=mnist-speedrun", "device=cuda"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    print(result.stdout, result.stderr[-2000:], flush=True)
    found = re.search(r"ratio b/a .*= ([0-9.]+)", result.stdout)
    rates = re.findall(r"^\s+(.+?)\s+(\d+) images/s", result.stdout, flags=re.M)
    if found is None:
        return f"failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else '?'}"
    return f"b/a = {found.group(1)}; " + ", ".join(f"{name.strip()} {int(rate):,} img/s" for name, rate in rates)


def _cnntrain(launcher: list[str], overrides: list[str], env: dict[str, str], run_dir: Path) -> dict[str, float]:
    command = [*launcher, *SPEEDRUN, *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    train = summary["timing"]["train_seconds"]
    print(f"{' '.join(command)}: test acc {summary['test']['acc']:.4f}, train {train:.2f} s", flush=True)
    return {
        "acc": summary["test"]["acc"],
        "train": summary["timing"]["train_seconds"],
        "wall": wall,
        "backend": summary["parallel"]["backend"],
        "world": summary["parallel"]["world_size"],
    }


if __name__ == "__main__":
    main()
