"""`cnntrain-predict RUN_DIR IMAGE...`: classify image files with a finished run's model (a multi-label run's: each
image's labels at or above their thresholds, with their probabilities); `cnntrain-predict model.onnx|model.xml|
model.pt2 IMAGE...` gives the same answers from a file cnntrain-export wrote, ONNX and OpenVINO without importing
torch (cnntrain.inference.runtime; torch is imported only on the run directory's path).

Each image file is converted the way the training images were (grayscale or RGB, resized to the model's
input size with the run's dataset.resize, the run's normalisation), then the top-k classes are shown per
image, or printed as JSON.

With --cam, each image's class activation map for its top class (LayerCAM at the run's report.cam_layer, by
default the last feature map before the head) is written as an overlay PNG, `NAME.cam.png`, into --cam-dir
(default predict_cam/ in the working directory: the run directory stays as the run left it). An overlay never
replaces an input image and is never written through a symbolic link.

The work is cnntrain.inference's (ImageClassifier reads and classifies, the task shapes each answer, write_cams
draws the maps); this module parses the arguments, picks the overlay files and shows the answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.names import TASK_MULTILABEL, TASK_SINGLE
from cnntrain.errors import ConfigError, UserError
from cnntrain.inference.answers import answers
from cnntrain.inference.runtime import MODEL_FILES, ExportedModel
from cnntrain.reporting.text import markup

if TYPE_CHECKING:
    import torch
    from rich.table import Table

    from cnntrain.inference.classifier import ImageClassifier
    from cnntrain.inference.load import SavedRun


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-predict", description="Classify image files with a trained run or a file cnntrain-export wrote."
    )
    p.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR|MODEL",
        help="a run directory written by cnntrain, or an exported model.onnx, model.xml or model.pt2 (its "
        "JSON beside it); ONNX and OpenVINO files run without torch",
    )
    p.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files (PNG, JPEG, WebP, BMP, TIFF, GIF), any size or colour",
    )
    p.add_checkpoint()
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N | mps")
    p.add_argument(
        "--cam",
        action="store_true",
        help="also write each image's class activation map for its top class as NAME.cam.png",
    )
    p.add_argument(
        "--cam-dir",
        type=Path,
        default=Path(CAM_DIR),
        metavar="DIR",
        help=f"where --cam writes its overlays (default {CAM_DIR}/ in the working directory)",
    )
    return p


CAM_DIR = "predict_cam"
CAM_SUFFIX = ".cam.png"


def cam_paths(images: list[Path], folder: Path) -> list[Path]:
    """One overlay file per image, `STEM.cam.png` in `folder` (`STEM-2.cam.png`, ... for a repeated stem); a
    UserError when one would replace an input image or write through a symbolic link, or `folder` is a file."""
    if folder.is_symlink():  # a default `cams` planted in a shared folder would send the overlays elsewhere
        raise UserError(
            f"--cam-dir {folder} is a symbolic link; cnntrain writes no output folder through a link "
            f"(name the folder it points to, or another one)"
        )
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--cam-dir {folder}: exists and is not a folder")
    inputs = {path.resolve() for path in images}
    taken: set[str] = set()
    paths = []
    for image in images:
        stem, n = image.stem, 1
        while (name := f"{stem}{'' if n == 1 else f'-{n}'}{CAM_SUFFIX}") in taken:
            n += 1
        taken.add(name)
        path = folder / name
        if path.is_symlink():
            raise UserError(
                f"{path} is a symbolic link; cnntrain-predict --cam does not write through links "
                f"(remove it, or choose another --cam-dir)"
            )
        if path.resolve() in inputs:
            raise UserError(f"{path} is one of the input images; choose another --cam-dir for the overlays")
        paths.append(path)
    return paths


def sets_table(path: Path, record: dict[str, Any]) -> Table:
    """One image's predicted labels, then the other top-k labels, with probability and threshold."""
    from rich.table import Table  # rich: start-up lazy, `--json` prints none

    names = ", ".join(markup(item["label"]) for item in record["labels"]) or "(none)"
    table = Table(title=f"{markup(path)}: {names}", title_justify="left")
    for column, justify in (
        ("label", "left"),
        ("probability", "right"),
        ("threshold", "right"),
        ("predicted", "center"),
    ):
        table.add_column(column, justify=justify)
    shown = record["labels"] + [item for item in record["top"] if not item["predicted"]]
    for item in shown:
        table.add_row(
            markup(item["label"]),
            f"{100 * item['probability']:.2f}%",
            f"{item['threshold']:.3f}",
            "yes" if item["predicted"] else "",
        )
    return table


def as_json(paths: list[Path], records: list[dict[str, Any]], cams: list[Path] | None = None) -> str:
    """--json: each image's record (cnntrain.inference.answers, the very records cnntrain-serve sends) after its
    path, and its overlay when --cam wrote one."""
    shown: list[dict[str, Any]] = [{"image": str(path), **record} for path, record in zip(paths, records)]
    for item, cam in zip(shown, cams or []):
        item["cam"] = str(cam)
    return json.dumps(shown, indent=2)


def as_table(path: Path, record: dict[str, Any], cam: Path | None = None) -> Table:
    from rich.table import Table  # rich: start-up lazy, `--json` prints none

    table = Table(
        title=markup(path), title_justify="left", caption=f"cam: {markup(cam)}" if cam else None, caption_justify="left"
    )
    table.add_column("rank", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    for rank, item in enumerate(record["top"], 1):
        table.add_row(str(rank), markup(item["class"]), f"{100 * item['probability']:.2f}%")
    return table


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top-k={args.top_k}: must be >= 1")
    if args.run_dir.suffix.lower() in MODEL_FILES and not args.run_dir.is_dir():
        _predict_from_file(args)
        return
    from cnntrain.config.validate import check_device  # omegaconf, torch: start-up lazy, a model file needs none
    from cnntrain.device import resolve_device
    from cnntrain.inference.classifier import ImageClassifier
    from cnntrain.inference.load import load_run

    check_device(args.device)
    cams = cam_paths(args.images, args.cam_dir) if args.cam else None
    saved = load_run(args.run_dir, args.checkpoint, resolve_device(args.device))
    classifier = ImageClassifier(saved)
    images = classifier.images(args.images)
    SHOW[saved.task.name](args, saved, classifier, images, cams)


def _predict_from_file(args: Any) -> None:
    """An exported file's answers, shown as a run's are (cnntrain.inference.runtime: no torch for ONNX/OpenVINO)."""
    given = {
        "--checkpoint": args.checkpoint != "best",
        "--device": args.device != "cpu",
        "--cam": args.cam,
        "--cam-dir": args.cam_dir != Path(CAM_DIR),
    }
    for flag in (flag for flag, set_ in given.items() if set_):
        raise ConfigError(
            f"{flag} is for predicting from a run directory; {args.run_dir.name} is an exported "
            f"file (it runs on the CPU as exported): drop {flag}"
        )
    model = ExportedModel(args.run_dir)
    records = answers(model, model.images(args.images), args.top_k)
    if model.contract.thresholds is None:
        _show_answers(args, records, None)
    else:
        _show_label_sets(args, records)


def _show_top(
    args: Any, saved: SavedRun, classifier: ImageClassifier, images: torch.Tensor, cams: list[Path] | None
) -> None:
    """One class per image: each image's top-k classes (and its class activation map), as tables or JSON."""
    from cnntrain.inference.predict import write_cams  # torch: start-up lazy, as in _main

    records = answers(classifier, images, args.top_k)
    if cams is not None:
        write_cams(saved, images, [saved.classes.index(record["top"][0]["class"]) for record in records], cams)
    _show_answers(args, records, cams)


def _show_answers(args: Any, records: list[dict[str, Any]], cams: list[Path] | None) -> None:
    if args.json:
        sys.stdout.write(as_json(args.images, records, cams) + "\n")
        return
    from cnntrain.reporting.console import output_console  # rich: start-up lazy, `--json` prints none

    console = output_console()
    for i, (path, record) in enumerate(zip(args.images, records)):
        console.print(as_table(path, record, cams[i] if cams else None))


def _show_sets(
    args: Any, saved: SavedRun, classifier: ImageClassifier, images: torch.Tensor, cams: list[Path] | None
) -> None:
    """A set of labels per image: each image's predicted label set, as tables or JSON."""
    if cams is not None:
        raise ConfigError("--cam maps one predicted class, and this run predicts a set of labels per image; drop --cam")
    _show_label_sets(args, answers(classifier, images, args.top_k))


def _show_label_sets(args: Any, records: list[dict[str, Any]]) -> None:
    if args.json:
        sys.stdout.write(as_json(args.images, records) + "\n")
        return
    from cnntrain.reporting.console import output_console  # rich: start-up lazy, `--json` prints none

    console = output_console()
    for path, record in zip(args.images, records):
        console.print(sets_table(path, record))


SHOW = {TASK_SINGLE: _show_top, TASK_MULTILABEL: _show_sets}
"""How each task's answers are shown (the task computes them: cnntrain.training.tasks)."""


def main() -> None:
    """Console-script entry point of cnntrain-predict."""
    run_command(_main)


if __name__ == "__main__":
    main()
