"""fp32 against bf16 autocast on this machine: the speedrun recipe (or any overrides) under each precision and the
peer script, interleaved round by round (the order rotates), one seed per round.

Per process it records the training time the process reports (summary.json's timing.train_seconds; the peer's
train_s), the wall time and the test accuracy; then the medians, the ratio bf16 / fp32 of the training times
within each round, and the side-by-side ratios cnntrain / peer (training, whole command) for each precision. The
seeds are the rounds' (0, 1, ...), so five rounds give the 5-seed accuracy of both precisions. Machines here are
noisy: read the medians and the per-round ratios, not single runs.

    python benchmarks/precision.py --data-root ../shared/data --peer ../shared/bench/peer_mnist_fast.py
    python benchmarks/precision.py --data-root DATA --peer PEER --rounds 5 --precisions fp32 bf16 auto
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

DEFAULT_OVERRIDES = ["experiment=mnist-speedrun"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw (CNNTRAIN_DATA_ROOT)")
    parser.add_argument("--peer", type=Path, default=None, help="peer script: python PEER DATA_ROOT SEED")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds, one seed each (default 5)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="trainer.precision values")
    parser.add_argument("overrides", nargs="*", help=f"cnntrain overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = parser.parse_args()

    overrides = args.overrides or DEFAULT_OVERRIDES
    names = [*args.precisions, *(["peer"] if args.peer else [])]
    rows: list[dict[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            row = {}
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotate the order
                if name == "peer":
                    row[name] = _peer(args.peer, args.data_root, round_)
                else:
                    run_dir = Path(scratch) / f"{name}-{round_}"
                    row[name] = _cnntrain_run(
                        [*overrides, f"trainer.precision={name}"], args.data_root, run_dir, round_
                    )
            rows.append(row)
            print(
                f"round {round_ + 1} (seed {round_}): "
                + "   ".join(
                    f"{n} train {row[n][1]:.2f} s, wall {row[n][0]:.2f} s, acc {row[n][2]:.2f}%" for n in names
                ),
                flush=True,
            )

    print(f"\n{' '.join(overrides)}, {len(rows)} rounds (seeds 0..{len(rows) - 1}), medians:")
    for name in names:
        wall, train, acc = (statistics.median(row[name][i] for row in rows) for i in range(3))
        accs = ", ".join(f"{row[name][2]:.2f}" for row in rows)
        print(
            f"  {name}: train {train:.2f} s, wall {wall:.2f} s, test acc {acc:.2f}% "
            f"(mean {_mean(rows, name):.2f}%: {accs})"
        )
    for name in args.precisions[1:]:
        ratios = [row[name][1] / row[args.precisions[0]][1] for row in rows]
        print(f"  train {name} / {args.precisions[0]}: median {statistics.median(ratios):.3f} {_spread(ratios)}")
    if args.peer:
        for name in args.precisions:
            train = [row[name][1] / row["peer"][1] for row in rows]
            wall = [row[name][0] / row["peer"][0] for row in rows]
            print(
                f"  {name} / peer: training median {statistics.median(train):.3f} {_spread(train)}, "
                f"whole command median {statistics.median(wall):.3f} {_spread(wall)}"
            )


def _mean(rows: list[dict[str, tuple[float, float, float]]], name: str) -> float:
    return statistics.mean(row[name][2] for row in rows)


def _spread(values: list[float]) -> str:
    return f"(min {min(values):.3f}, max {max(values):.3f})"


def _cnntrain_run(overrides: list[str], data_root: Path, run_dir: Path, seed: int) -> tuple[float, float, float]:
    """`python -m cnntrain` of the checkout on the path (PYTHONPATH), not necessarily the installed script's."""
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(data_root.resolve())}
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnntrain",
            *overrides,
            f"seed={seed}",
            "trainer.progress=false",
            f"hydra.run.dir={run_dir}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cnntrain failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return wall, float(summary["timing"]["train_seconds"]), 100 * float(summary["test"]["acc"])


def _peer(script: Path, data_root: Path, seed: int) -> tuple[float, float, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(data_root), str(seed)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    train, acc = re.search(r"train_s=([0-9.]+)", done.stdout), re.search(r"acc=([0-9.]+)", done.stdout)
    if done.returncode != 0 or train is None or acc is None:
        sys.exit(f"peer script failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall, float(train.group(1)), float(acc.group(1))


if __name__ == "__main__":
    main()
