"""`cnntrain-eval RUN_DIR`: test a finished run's checkpoint again, without training.

By default on the run's own test split; `KEY=VALUE` arguments change the dataset config (another root,
another dataset with the same classes). Prints the same tables as the end of training and writes
eval_summary.json into the run directory. The work is cnntrain.inference.evaluate's; this module parses the
arguments and writes the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.validate import check_device
from cnntrain.errors import ConfigError
from cnntrain.inference.evaluate import evaluate
from cnntrain.inference.evaluate_file import evaluate_file
from cnntrain.reporting.console import Reporter
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.text import markup


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-eval", description="Evaluate a finished run on the test split.")
    p.add_run_dir("dataset config changes, e.g. dataset.root=/data or data_root=/data")
    p.add_checkpoint()
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the run's)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="PATH",
        help="an exported file of this run (model.onnx, model.xml, model.pt2): its accuracy and its "
        "agreement with the eager model on the test split, run on its own runtime (CPU)",
    )
    return p


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(
            f"--batch-size={args.batch_size}: must be >= 1 (leave it out to use the run's trainer.eval_batch_size)"
        )
    check_device(args.device)
    reporter = Reporter()
    if args.model is not None:
        _evaluate_file(args, reporter)
        return
    evaluate(
        args.run_dir,
        args.overrides,
        reporter,
        checkpoint=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
    )
    reporter.print(f"wrote {markup(RunDir(args.run_dir).eval_summary_json)}")


def _evaluate_file(args: Any, reporter: Reporter) -> None:
    """The exported file against the eager model on the test split, one line each (nothing is written)."""
    if args.batch_size is not None:
        raise ConfigError(
            "--batch-size is for the checkpoint; --model runs the exported file as it was exported: drop --batch-size"
        )
    result = evaluate_file(args.run_dir, args.model, args.overrides, checkpoint=args.checkpoint)
    metric = "mAP" if result["metric"] == "map" else "accuracy"
    reporter.print(
        f"{markup(args.model)} ({result['format']}, {result['precision']}) on {result['images']} test "
        f"images: {metric} {result['exported']:.2f}% (eager {result['eager']:.2f}%, "
        f"{result['drop_pt']:.2f} pt below it), top-1 agreement {100 * result['top1_agreement']:.2f}%, "
        f"largest probability difference {result['max_probability_difference']:.2g}"
    )


def main() -> None:
    """Console-script entry point of cnntrain-eval."""
    run_command(_main)


if __name__ == "__main__":
    main()
