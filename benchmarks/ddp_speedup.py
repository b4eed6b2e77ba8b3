"""Data-parallel speed-up: the same run (same global batch) on 1 process and on N ranks, interleaved in one run.

Each round runs `cnntrain OVERRIDES trainer.devices=K` for every K given (default 1 and 2), one after the
other, so all see the same machine. Per run it prints the training time the run reports itself
(summary.json's timing.train_seconds), the wall time of the whole command and the test accuracy; then the
medians and, round by round, the speed-up train_seconds(1) / train_seconds(K). On the CPU the ranks share the
cores (each takes cores / K threads), so this measures what splitting the batch over processes buys there;
on a machine with K GPUs it measures DDP over them. Machines here are noisy: read the medians and the ratios.

    python benchmarks/ddp_speedup.py --data-root ../shared/data
    python benchmarks/ddp_speedup.py --data-root DATA --devices 1 2 --rounds 3 -- model=cnn2 trainer.epochs=2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OVERRIDES = ["model=cnn2", "trainer.epochs=1", "trainer.batch_size=256", "device=cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw (CNNTRAIN_DATA_ROOT)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="process counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("overrides", nargs="*", help=f"cnntrain overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = parser.parse_args()

    overrides = args.overrides or DEFAULT_OVERRIDES
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in args.devices}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, args.rounds + 1):
            line = []
            for devices in args.devices:
                found = _run(overrides, devices, args.data_root, Path(scratch) / f"r{round_}-d{devices}")
                runs[devices].append(found)
                line.append(
                    f"devices={devices}: train {found['train']:.2f} s (wall {found['wall']:.2f} s, "
                    f"test acc {100 * found['acc']:.2f}%)"
                )
            base = runs[args.devices[0]][-1]["train"]
            ratios = "  ".join(f"x{base / runs[k][-1]['train']:.2f} on {k}" for k in args.devices[1:])
            print(f"round {round_}: " + "   ".join(line) + f"   speed-up {ratios}", flush=True)

    print(f"\ncnntrain {' '.join(overrides)} (trainer.batch_size is the global batch):")
    base = statistics.median(r["train"] for r in runs[args.devices[0]])
    for devices in args.devices:
        train = statistics.median(r["train"] for r in runs[devices])
        wall = statistics.median(r["wall"] for r in runs[devices])
        per_round = [a["train"] / b["train"] for a, b in zip(runs[args.devices[0]], runs[devices])]
        print(
            f"  devices={devices}: median train {train:.2f} s, median wall {wall:.2f} s, speed-up of the medians "
            f"x{base / train:.2f}, per round {', '.join(f'x{r:.2f}' for r in per_round)}"
        )


def _run(overrides: list[str], devices: int, data_root: Path, run_dir: Path) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "cnntrain",
        *overrides,
        f"trainer.devices={devices}",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(data_root.resolve())}
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"train": summary["timing"]["train_seconds"], "wall": wall, "acc": summary["test"]["acc"]}


if __name__ == "__main__":
    main()
