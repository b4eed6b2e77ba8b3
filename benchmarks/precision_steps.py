"""fp32 against bf16 autocast, training step by training step, in one process: the run's own setup (data on the
device, model, loss, optimizer, layout) built once per precision, then short blocks of optimizer steps on the
same batches, alternating between the precisions round after round. On a shared machine the load drifts within
seconds; blocks this short, paired round by round, compare the precisions under the same load, which whole
processes minutes apart do not (benchmarks/precision.py measures those, with accuracy).

    python benchmarks/precision_steps.py --data-root ../shared/data
    python benchmarks/precision_steps.py --data-root DATA --rounds 20 --steps 20 -- experiment=mnist-speedrun
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

DEFAULT_OVERRIDES = ["experiment=mnist-speedrun"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of one block per precision (default 15)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per block (default 20)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="trainer.precision values")
    parser.add_argument("overrides", nargs="*", help=f"cnntrain overrides (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = parser.parse_args()

    from cnntrain.config.compose import compose_train  # torch: once the arguments are read
    from cnntrain.config.validate import validate
    from cnntrain.training.setup import setup

    overrides = [*(args.overrides or DEFAULT_OVERRIDES), f"data_root={args.data_root.resolve()}"]
    runs = {name: setup(validate(compose_train([*overrides, f"trainer.precision={name}"]))) for name in args.precisions}
    for run in runs.values():
        _block(run, 0, 5)  # warm-up: oneDNN builds its kernels on first use
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        order = list(runs)[round_ % len(runs) :] + list(runs)[: round_ % len(runs)]  # rotate who goes first
        for name in order:
            times[name].append(_block(runs[name], 5 + round_ * args.steps, args.steps) / args.steps)
    base = args.precisions[0]
    print(f"{' '.join(overrides)}: {args.rounds} rounds of {args.steps} steps per precision")
    for name, values in times.items():
        print(f"  {name}: median {1000 * statistics.median(values):.2f} ms/step (min {1000 * min(values):.2f})")
    for name in args.precisions[1:]:
        ratios = [b / a for a, b in zip(times[base], times[name], strict=True)]
        faster = sum(r < 1 for r in ratios)
        print(
            f"  {name} / {base} per round: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max "
            f"{max(ratios):.3f}; {name} faster in {faster} of {len(ratios)} rounds)"
        )


def _block(run: Any, first: int, steps: int) -> float:
    """`steps` optimizer steps on the training split's batches from batch `first` on (wrapping), timed."""
    from cnntrain.training.evaluation import forward

    split, size = run.data.train, run.trainer.batch_size
    batches = len(split) // size
    run.train_model.train()
    started = time.perf_counter()
    for step in range(first, first + steps):
        at = (step % batches) * size
        images, labels = split.images[at : at + size], split.labels[at : at + size]
        run.optimizer.zero_grad(set_to_none=True)
        loss, _ = forward(run.train_model, run.loss_fn, images, labels, run.data, run.accel)
        run.accel.backward_and_step(loss, run.optimizer)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
