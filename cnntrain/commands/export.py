"""`cnntrain-export RUN_DIR --format onnx|openvino|pt2|torchscript [--int8]`: a self-contained model file to ship.

Every format takes images as float32 in [0, 1] (TorchScript also takes uint8 0..255), NCHW, any batch size, and
normalises them itself with the run's mean/std, so callers never need the training config. A JSON file next to
the export records the input contract, the classes (a multi-label model's thresholds), where it came from, and
how it compared with the eager model on the run's test images; a float32 file that disagrees is not kept. With
--int8 (onnx, openvino) the file is quantized after training, calibrated on the run's training images.
The work is cnntrain.inference.export's; this module parses the arguments and says what it wrote.
"""

from __future__ import annotations

from pathlib import Path

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.inference.export import (
    ACCURACY_BUDGET,
    CALIBRATION,
    FORMATS,
    check_options,
    check_output,
    export_run,
    export_target,
    metadata_path,
)
from cnntrain.inference.load import load_run


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-export",
        description="Export a trained run to ONNX, OpenVINO IR, torch.export (.pt2) or TorchScript.",
    )
    p.add_run_dir(
        "where the run's data is now, for the check and int8 calibration, as cnntrain-eval takes it: "
        "dataset.root=/data or data_root=/data"
    )
    p.add_argument(
        "--format",
        required=True,
        choices=list(FORMATS),
        help="torchscript (legacy), pt2 (torch.export), onnx, or openvino",
    )
    p.add_checkpoint()
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="file to write (default: RUN_DIR/export/model.EXT, model-int8.EXT with --int8)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantize to int8 after training (onnx: ONNX Runtime static QDQ; openvino: NNCF)",
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=CALIBRATION,
        metavar="N",
        help=f"training images to calibrate --int8 on (default {CALIBRATION})",
    )
    p.add_argument(
        "--accuracy-budget",
        type=float,
        default=ACCURACY_BUDGET,
        metavar="PT",
        help=f"points of test accuracy (mAP for a set of labels) --int8 may lose before the file is "
        f"flagged (default {ACCURACY_BUDGET:g})",
    )
    return p


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    check_options(args.format, args.int8, args.calibration, args.accuracy_budget)
    path, root = export_target(args.run_dir, args.format, args.int8, args.output)
    check_output(path, args.format)  # before the model is loaded: a bad --output costs nothing
    saved = load_run(args.run_dir, args.checkpoint)
    export_run(
        saved,
        args.format,
        path,
        root=root,
        int8=args.int8,
        overrides=args.overrides,
        calibration=args.calibration,
        accuracy_budget=args.accuracy_budget,
        say=print,
    )
    print(f"wrote {path} and {metadata_path(path)}")


def main() -> None:
    """Console-script entry point of cnntrain-export."""
    run_command(_main)


if __name__ == "__main__":
    main()
