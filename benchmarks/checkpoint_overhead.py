"""What checkpoints inside an epoch cost: the same run with and without trainer.checkpoint.every_steps=N,
interleaved in one run of this script.

Each round runs `cnntrain OVERRIDES` and `cnntrain OVERRIDES trainer.checkpoint.every_steps=N`, one after the
other, so both see the same machine. Per run it prints the training time the run reports itself (summary.json's
timing.train_seconds: the training loops, where the checkpoints are written), the checkpoints written
(steps / N) and the test accuracy, which must be the same with and without (a checkpoint changes no number);
then the medians and the ratio of the medians, train_seconds(with) / train_seconds(without). Machines here are
shared and noisy: read the per-round ratios too.

    python benchmarks/checkpoint_overhead.py --data-root ../shared/data
    python benchmarks/checkpoint_overhead.py --data-root DATA --every 20 --rounds 5 -- experiment=mnist-speedrun
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_OVERRIDES = [
    "experiment=mnist-speedrun",
    "device=cpu",
    "report.plots=false",
    "report.html=false",
    "report.analysis=false",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw (CNNTRAIN_DATA_ROOT)")
    parser.add_argument("--every", type=int, default=50, help="trainer.checkpoint.every_steps (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("overrides", nargs="*", help=f"cnntrain overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = parser.parse_args()

    overrides = args.overrides or DEFAULT_OVERRIDES
    variants = {"without": [], "with": [f"trainer.checkpoint.every_steps={args.every}"]}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, args.rounds + 1):
            for name, extra in variants.items():
                runs[name].append(_run([*overrides, *extra], args.data_root, Path(scratch) / f"r{round_}-{name}"))
            without, with_ = runs["without"][-1], runs["with"][-1]
            inside = _inside(runs["with"][-1]["run_dir"], args.every)
            print(
                f"round {round_}: without {without['train']:.2f} s (test acc {100 * without['acc']:.2f}%)   "
                f"with every_steps={args.every}: {with_['train']:.2f} s ({inside} checkpoints inside epochs, "
                f"test acc {100 * with_['acc']:.2f}%)   ratio x{with_['train'] / without['train']:.3f}",
                flush=True,
            )

    medians = {name: statistics.median(r["train"] for r in found) for name, found in runs.items()}
    per_round = [b["train"] / a["train"] for a, b in zip(runs["without"], runs["with"])]
    print(
        f"\ncnntrain {' '.join(overrides)}: median train_seconds without {medians['without']:.2f} s, with "
        f"trainer.checkpoint.every_steps={args.every} {medians['with']:.2f} s; ratio of the medians "
        f"x{medians['with'] / medians['without']:.3f}, per round {', '.join(f'x{r:.3f}' for r in per_round)}"
    )


def _run(overrides: list[str], data_root: Path, run_dir: Path) -> dict:
    command = [sys.executable, "-m", "cnntrain", *overrides, "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "CNNTRAIN_DATA_ROOT": str(data_root.resolve())}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"train": summary["timing"]["train_seconds"], "acc": summary["test"]["acc"], "run_dir": run_dir}


def _inside(run_dir: Path, every: int) -> int:
    """The checkpoints a run wrote inside epochs: at each N-th optimizer step that does not end an epoch (whose
    fractional epoch in steps.csv is not whole)."""
    with (run_dir / "steps.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return sum(1 for row in rows if int(row["step"]) % every == 0 and not float(row["epoch"]).is_integer())


if __name__ == "__main__":
    main()
