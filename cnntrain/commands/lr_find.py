"""`cnntrain-lr-find KEY=VALUE ...`: the learning-rate range test (Leslie Smith's, as fastai and Lightning's
lr_find run it), for the run those overrides describe.

The same data, model, loss and optimizer a `cnntrain` run would build train for `--steps` batches while the
learning rate grows exponentially from `--min-lr` to `--max-lr` (every parameter group keeps its ratio to the
first, so a fine-tune's slower backbone stays slower); the test stops early once the smoothed loss passes 4x
its lowest. It writes the loss-vs-lr curve (`--out`, lr_find.png) and its numbers (lr_find.csv beside it),
and suggests the rate where the smoothed loss falls fastest, the usual reading of the curve. Nothing of the
trial is kept: the run itself starts from fresh weights.

torch and the run's setup are imported inside the functions that use them, so `--help` and a bad
argument answer without them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.errors import UserError, first_line

DEFAULT_OUT = Path("lr_find.png")
DIVERGED = 4.0  # the test stops when the smoothed loss exceeds this multiple of its lowest value
SMOOTHING = 0.05  # weight of each new batch in the exponentially smoothed loss


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-lr-find", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="cnntrain config overrides, e.g. model=cnn3 optimizer=sgd")
    p.add_argument("--steps", type=int, default=100, help="batches to train (default 100)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    p.add_argument("--max-lr", type=float, default=10.0, help="last learning rate (default 10)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the plot (default lr_find.png); its CSV beside it")
    return p


def lr_range_test(cfg: Any, steps: int, min_lr: float, max_lr: float) -> list[tuple[float, float, float]]:
    """(lr, batch loss, smoothed loss) per step of the range test on the config's run."""
    import torch

    from cnntrain.data.containers import iterate_batches
    from cnntrain.training.evaluation import forward
    from cnntrain.training.setup import setup

    run = setup(cfg)
    model, optimizer, accel, data = run.train_model, run.optimizer, run.accel, run.data
    ratios = [group["lr"] / optimizer.param_groups[0]["lr"] for group in optimizer.param_groups]
    generator = torch.Generator().manual_seed(cfg.seed)
    growth = (max_lr / min_lr) ** (1 / max(1, steps - 1))
    rows: list[tuple[float, float, float]] = []
    smooth, lowest = 0.0, math.inf
    model.train()
    while len(rows) < steps:
        for images, labels in iterate_batches(data.train, cfg.trainer.batch_size, shuffle=True, generator=generator):
            lr = min_lr * growth ** len(rows)
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            loss, _ = forward(model, run.loss_fn, images, labels, data, accel)
            optimizer.zero_grad(set_to_none=True)
            accel.backward_and_step(loss, optimizer)
            value = float(loss.detach())
            smooth = value if not rows else (1 - SMOOTHING) * smooth + SMOOTHING * value
            rows.append((lr, value, smooth))
            lowest = min(lowest, smooth)
            if not math.isfinite(smooth) or smooth > DIVERGED * lowest or len(rows) == steps:
                return rows
    return rows


def suggestion(rows: list[tuple[float, float, float]]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade of lr (None when it never falls), looked for
    before the loss starts to climb and past the first tenth of the steps (the smoothing's start-up)."""
    usable = [row for row in rows if math.isfinite(row[2])]
    if len(usable) < 5:
        return None
    lowest = min(range(len(usable)), key=lambda i: usable[i][2])
    start = max(1, len(usable) // 10)
    slopes = [
        ((usable[i][2] - usable[i - 1][2]) / (math.log10(usable[i][0]) - math.log10(usable[i - 1][0])), i)
        for i in range(start, lowest + 1)
    ]
    if not slopes:
        return None
    slope, index = min(slopes)
    return usable[index][0] if slope < 0 else None


def write_results(rows: list[tuple[float, float, float]], suggested: float | None, out: Path) -> Path:
    """lr_find.png (loss against lr, log axis, the suggestion marked) and its CSV beside it; returns the CSV."""
    from cnntrain.files import atomic_write
    from cnntrain.reporting.figures import new_figure, save_png

    table = out.with_suffix(".csv")

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "lr", "loss", "smoothed_loss"])
            writer.writerows((step, lr, loss, smooth) for step, (lr, loss, smooth) in enumerate(rows, 1))

    atomic_write(table, write_csv)
    figure = new_figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    lrs = [row[0] for row in rows]
    ax.plot(lrs, [row[1] for row in rows], color="tab:blue", alpha=0.25, linewidth=1, label="batch loss")
    ax.plot(lrs, [row[2] for row in rows], color="tab:blue", linewidth=1.8, label="smoothed")
    finite = [row[2] for row in rows if math.isfinite(row[2])]
    lowest = min((value for row in rows for value in row[1:] if math.isfinite(value)), default=None)
    if finite and lowest is not None:  # from the lowest batch loss up to where the test calls it diverged
        ax.set_ylim(lowest - 0.05 * abs(lowest), min(max(finite), DIVERGED * min(finite)) * 1.05)
    if suggested is not None:
        ax.axvline(suggested, color="tab:red", linestyle="--", linewidth=1.2, label=f"suggested lr {suggested:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False)
    figure.tight_layout()
    save_png(figure, out)
    return table


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    if args.steps < 5:
        raise UserError(f"--steps {args.steps}: the range test needs at least 5 steps")
    if not 0 < args.min_lr < args.max_lr or not math.isfinite(args.max_lr):
        raise UserError(f"--min-lr {args.min_lr:g} --max-lr {args.max_lr:g}: need 0 < min-lr < max-lr")
    if args.out.suffix.lower() != ".png" or args.out.is_dir():
        raise UserError(f"--out {args.out}: give a file name ending in .png")
    from cnntrain.commands.preflight import preflight

    (cfg,) = preflight(args.overrides, multirun=False).configs
    rows = lr_range_test(cfg, args.steps, args.min_lr, args.max_lr)
    suggested = suggestion(rows)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table = write_results(rows, suggested, args.out)
    except OSError as err:
        raise UserError(f"cannot write {args.out}: {first_line(err)}") from None
    stopped = "" if len(rows) == args.steps else f", stopped after {len(rows)} steps when the loss diverged"
    print(f"lr range test: {len(rows)} steps from {rows[0][0]:.2g} to {rows[-1][0]:.2g}{stopped}")
    if suggested is None:
        print("no suggestion: the loss never fell; widen --min-lr/--max-lr or check the data and the model")
    else:
        print(f"suggested optimizer.lr={suggested:.2g} (where the smoothed loss falls fastest)")
    print(f"wrote {args.out.resolve()} and {table.resolve()}")


def main() -> None:
    """Console-script entry point of cnntrain-lr-find."""
    run_command(_main)


if __name__ == "__main__":
    main()
