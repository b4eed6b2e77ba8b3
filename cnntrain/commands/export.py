"""`cnntrain-export RUN_DIR --format torchscript|onnx`: a self-contained model file to ship.

The exported module takes images as float32 in [0, 1] (TorchScript also takes uint8 0..255), NCHW,
and normalises them itself with the run's mean/std, so callers never need the training config.
A JSON file next to the export records the input contract, the classes and where it came from. A multi-label
model's export gives each label's probability (a sigmoid at its end); the JSON adds each label's threshold.
The work is cnntrain.inference.export's; this module parses the arguments and says what it wrote.
"""

from __future__ import annotations

from pathlib import Path

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.inference.export import FORMATS, export_run, metadata_path
from cnntrain.inference.load import SavedRun, load_run
from cnntrain.reporting.run_dir import RunDir


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-export", description="Export a trained run to TorchScript or ONNX.")
    p.add_argument("run_dir", type=Path, help="a run directory written by cnntrain")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="torchscript or onnx")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a path to a .pt file")
    p.add_argument(
        "--output", type=Path, default=None, help="file to write (default: RUN_DIR/export/model.pt or model.onnx)"
    )
    return p


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_args(argv)
    path = export_to(load_run(args.run_dir, args.checkpoint), args.format, args.run_dir, args.output)
    print(f"wrote {path} and {metadata_path(path)}")


def export_to(saved: SavedRun, fmt: str, run_dir: Path, output: Path | None) -> Path:
    """Where an export goes, for this command and results.Run.export alike: `output` as named, else export/ in the
    run directory, where no folder may link out of the run (cnntrain.files.safe_folder). Returns the file."""
    path = output or RunDir(run_dir).export(FORMATS[fmt])
    export_run(saved, fmt, path, root=None if output else run_dir)
    return path


def main() -> None:
    """Console-script entry point of cnntrain-export."""
    run_command(_main)


if __name__ == "__main__":
    main()
