"""Time outside training: a whole `cnntrain` process against a bare peer script, interleaved in one run.

Each round runs the cnntrain command (default: `cnntrain experiment=mnist-speedrun`, with its plots,
checkpoints and summary) and the peer script (a single-file MNIST trainer: torch and torchvision imports,
data, training loop, test), one after the other, so both see the same machine. Per process it prints the
wall time, the training time the process reports itself (summary.json's timing.train_seconds; the peer's
train_s), and wall minus training; then the medians and, round by round, the ratio cnntrain wall / peer
wall. Machines here are noisy: read the medians and the ratios, not single runs.

    python benchmarks/startup.py --data-root ../shared/data --peer ../shared/bench/peer_mnist_fast.py
    python benchmarks/startup.py --data-root DATA --peer PEER --rounds 5 -- model=cnn2 trainer.epochs=1
    python benchmarks/startup.py --data-root DATA --peer PEER --command "python -m cnntrain.cli"   # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
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
    parser.add_argument("--peer", type=Path, required=True, help="peer script: python PEER DATA_ROOT SEED")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--command", default=None, help="the cnntrain command (default: this environment's)")
    parser.add_argument("overrides", nargs="*", help=f"cnntrain overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = parser.parse_args()

    command = shlex.split(args.command) if args.command else _cnntrain()
    overrides = args.overrides or DEFAULT_OVERRIDES
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, args.rounds + 1):
            ours = _time_cnntrain(command, overrides, args.data_root, Path(scratch) / f"run{round_}")
            peer = _time_peer(args.peer, args.data_root, round_)
            rows.append(
                {"cnntrain_wall": ours[0], "cnntrain_train": ours[1], "peer_wall": peer[0], "peer_train": peer[1]}
            )
            print(
                f"round {round_}: cnntrain {ours[0]:.2f} s (train {ours[1]:.2f} s, outside {ours[0] - ours[1]:.2f} s)"
                f"   peer {peer[0]:.2f} s (train {peer[1]:.2f} s, outside {peer[0] - peer[1]:.2f} s)"
                f"   ratio {ours[0] / peer[0]:.3f}",
                flush=True,
            )

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    outside_ours = statistics.median(row["cnntrain_wall"] - row["cnntrain_train"] for row in rows)
    outside_peer = statistics.median(row["peer_wall"] - row["peer_train"] for row in rows)
    ratios = [row["cnntrain_wall"] / row["peer_wall"] for row in rows]
    print(
        f"\ncnntrain {' '.join(overrides)}: median wall {median('cnntrain_wall'):.2f} s, "
        f"train {median('cnntrain_train'):.2f} s, wall - train {outside_ours:.2f} s"
    )
    print(
        f"peer {args.peer.name}: median wall {median('peer_wall'):.2f} s, train {median('peer_train'):.2f} s, "
        f"wall - train {outside_peer:.2f} s"
    )
    print(
        f"ratio cnntrain wall / peer wall: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds)"
    )


def _cnntrain() -> list[str]:
    script = Path(sys.executable).parent / "cnntrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cnntrain"]


def _time_cnntrain(command: list[str], overrides: list[str], data_root: Path, run_dir: Path) -> tuple[float, float]:
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(data_root.resolve())}
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *overrides, "trainer.progress=false", f"hydra.run.dir={run_dir}"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cnntrain failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return wall, float(summary["timing"]["train_seconds"])


def _time_peer(script: Path, data_root: Path, seed: int) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(data_root), str(seed)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    found = re.search(r"train_s=([0-9.]+)", done.stdout)
    if done.returncode != 0 or found is None:
        sys.exit(f"peer script failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall, float(found.group(1))


if __name__ == "__main__":
    main()
