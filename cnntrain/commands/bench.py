"""`cnntrain-bench RUN_DIR`: every way to run the run's model (eager fp32 and bf16, torch.compile, each exported
format in fp32 and int8) measured on its own test split, and the fastest one within the accuracy budget.

The work is cnntrain.inference.bench's; this module parses the arguments, prints the table and the
recommendation, and writes the run's report.html again when it has one, so the page shows the new figures.
"""

from __future__ import annotations

from pathlib import Path

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.inference.bench import (
    DEFAULT_FORMATS,
    FORMATS,
    IMAGES,
    MAX_IMAGES,
    MAX_RUNS,
    OPTIMIZE,
    RUNS,
    Options,
    bench_run,
    parse_formats,
)
from cnntrain.inference.bench_table import table_lines
from cnntrain.inference.export import ACCURACY_BUDGET
from cnntrain.reporting.page import write_run_page
from cnntrain.reporting.run_dir import RunDir


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-bench",
        description="Measure a trained run's model in every format on its test split and say which to ship.",
    )
    p.add_run_dir("where the run's data is now, as cnntrain-eval takes it: dataset.root=/data or data_root=/data")
    p.add_argument(
        "--formats",
        default=None,
        metavar="LIST",
        help=f"comma-separated, from {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)}; a format whose "
        f"extra is missing is then skipped, while a format named here without it is an error)",
    )
    p.add_argument("--compile", action="store_true", help="also torch.compile the eager model (slow to compile)")
    p.add_checkpoint()
    p.add_argument(
        "--runs",
        type=int,
        default=RUNS,
        metavar="N",
        help=f"batch-1 calls timed per format (default {RUNS}, at most {MAX_RUNS:,})",
    )
    p.add_argument(
        "--images",
        type=int,
        default=IMAGES,
        metavar="N",
        help=f"test images scored per format (default {IMAGES}, at most {MAX_IMAGES:,})",
    )
    p.add_argument(
        "--accuracy-budget",
        type=float,
        default=ACCURACY_BUDGET,
        metavar="PT",
        help=f"points of test accuracy (mAP) a format may lose against eager and still be recommended "
        f"(default {ACCURACY_BUDGET:g}, as cnntrain-export's)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads of every runtime (torch, ONNX Runtime, OpenVINO; default: each one's own); on a machine "
        "others share, --threads 1 keeps threads from waiting on each other",
    )
    p.add_argument(
        "--optimize",
        default="latency",
        choices=OPTIMIZE,
        help="what fastest means: batch-1 latency (default) or batch-32 throughput",
    )
    return p


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    options = Options(
        formats=parse_formats(args.formats) if args.formats is not None else DEFAULT_FORMATS,
        named=args.formats is not None,
        runs=args.runs,
        images=args.images,
        accuracy_budget=args.accuracy_budget,
        compile=args.compile,
        optimize=args.optimize,
        threads=args.threads,
    )
    options.check()  # before the model is loaded: a bad value costs nothing
    result = bench_run(args.run_dir, options, checkpoint=args.checkpoint, overrides=args.overrides, say=print)
    print("\n".join(table_lines(result)))
    paths = RunDir(Path(result["run_dir"]))
    print(f"wrote {paths.bench_json}")
    if paths.report_html.is_file() and paths.summary_json.is_file():
        print(f"wrote {write_run_page(paths.root)} (with the bench)")


def main() -> None:
    """Console-script entry point of cnntrain-bench."""
    run_command(_main)


if __name__ == "__main__":
    main()
