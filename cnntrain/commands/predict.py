"""`cnntrain-predict RUN_DIR IMAGE...`: classify image files with a finished run's model (a multi-label run's: each
image's labels at or above their thresholds, with their probabilities).

Each image file is converted the way the training images were (grayscale or RGB, resized to the model's
input size with the run's dataset.resize, the run's normalisation), then the top-k classes are shown per
image, or printed as JSON.

With --cam, each image's class activation map for its top class (LayerCAM at the run's report.cam_layer, by
default the last feature map before the head) is written as an overlay PNG, `NAME.cam.png`, into --cam-dir
(default predict_cam/ in the working directory: the run directory stays as the run left it). An overlay never
replaces an input image and is never written through a symbolic link.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.validate import check_device
from cnntrain.data.images import decode_image
from cnntrain.device import resolve_device
from cnntrain.errors import ConfigError, UserError
from cnntrain.models.registry import parse_item
from cnntrain.models.tta import predict_with_tta
from cnntrain.reporting.text import markup
from cnntrain.training.saved_run import SavedRun, load_run


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-predict", description="Classify image files with a trained run.")
    p.add_argument("run_dir", type=Path, help="a run directory written by cnntrain")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="image files (PNG, JPEG, WebP, BMP, TIFF, GIF), any size or colour")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a path to a .pt file")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N | mps")
    p.add_argument("--cam", action="store_true",
                   help="also write each image's class activation map for its top class as NAME.cam.png")
    p.add_argument("--cam-dir", type=Path, default=Path(CAM_DIR), metavar="DIR",
                   help=f"where --cam writes its overlays (default {CAM_DIR}/ in the working directory)")
    return p


CAM_DIR = "predict_cam"
CAM_SUFFIX = ".cam.png"
CAM_PIXELS = 224  # an overlay's longer side at least (small images are enlarged, nearest neighbour)


def cam_paths(images: list[Path], folder: Path) -> list[Path]:
    """One overlay file per image, `STEM.cam.png` in `folder` (`STEM-2.cam.png`, ... for a repeated stem); a
    UserError when one would replace an input image or write through a symbolic link, or `folder` is a file."""
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
            raise UserError(f"{path} is a symbolic link; cnntrain-predict --cam does not write through links "
                            f"(remove it, or choose another --cam-dir)")
        if path.resolve() in inputs:
            raise UserError(f"{path} is one of the input images; choose another --cam-dir for the overlays")
        paths.append(path)
    return paths


def write_cams(saved: SavedRun, images_uint8: torch.Tensor, classes: list[int], paths: list[Path]) -> str:
    """The overlays of `classes` (one per image) into `paths`; returns the layer they were taken at."""
    from cnntrain.files import atomic_write
    from cnntrain.models.cam import class_activation_maps, find_cam_layer
    from cnntrain.reporting.plots import cam_overlay

    device = saved.mean.device
    layer = find_cam_layer(saved.model, saved.input_shape, OmegaConf.select(saved.config, "report.cam_layer"),
                           layer_names(saved.config))
    if layer is None:
        raise UserError(f"model {saved.config.model.name!r} has no feature map larger than 1x1 to take a class "
                        f"activation map at; drop --cam")
    cams = class_activation_maps(saved.model, layer, saved.normalize(images_uint8.to(device)),
                                 torch.tensor(classes))
    for image, cam, path in zip(images_uint8, cams, paths):
        overlay = cam_overlay(image.cpu(), cam)
        scale = max(1, -(-CAM_PIXELS // max(overlay.shape[1:])))
        big = overlay.repeat_interleave(scale, 1).repeat_interleave(scale, 2).permute(1, 2, 0).contiguous()
        picture = Image.fromarray(big.numpy())
        atomic_write(path, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
    return layer.label


def layer_names(config: DictConfig) -> list[str] | None:
    """The config items' layer names (the model summary's), to name the CAM layer as the summary does."""
    try:
        return [parse_item(item)[0] for item in OmegaConf.to_container(config.model.layers, resolve=True)]
    except Exception:  # names only label the layer; the saved model was built from these layers already
        return None


def load_images(paths: list[Path], input_shape: tuple[int, int, int], resize: str = "stretch") -> torch.Tensor:
    """uint8 [N, C, H, W]: every file decoded (resized as the run's dataset.resize says) before anything is
    predicted, so a bad one fails first."""
    channels, height, width = input_shape
    return torch.stack([decode_image(path, channels, height, width, resize=resize) for path in paths])


def predict(saved: SavedRun, images_uint8: torch.Tensor, top_k: int) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) pairs per image, most likely first."""
    device = saved.mean.device
    with torch.inference_mode():
        outputs = predict_with_tta(saved.model, saved.normalize(images_uint8.to(device)), saved.tta)
        probs = outputs.softmax(dim=1)  # logits or log-probabilities alike
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [[(saved.classes[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values.cpu(), indices.cpu())]


def predict_sets(saved: SavedRun, images_uint8: torch.Tensor, top_k: int) -> list[dict[str, Any]]:
    """Multi-label: per image, the labels at or above their thresholds (most likely first) with their
    probabilities, and the top-k labels whether predicted or not."""
    device = saved.mean.device
    with torch.inference_mode():
        inputs = saved.normalize(images_uint8.to(device))
        logits = saved.model(inputs)
        if saved.tta == "hflip":
            logits = (logits + saved.model(inputs.flip(3))) / 2
        probs = torch.sigmoid(logits.float()).cpu()
    thresholds = saved.thresholds or [0.5] * len(saved.classes)
    records = []
    for row in probs:
        order = torch.argsort(row, descending=True, stable=True).tolist()
        label = lambda k, row=row: {"label": saved.classes[k], "probability": float(row[k]),
                                    "threshold": thresholds[k], "predicted": float(row[k]) >= thresholds[k]}
        records.append({"labels": [label(k) for k in order if float(row[k]) >= thresholds[k]],
                        "top": [label(k) for k in order[:top_k]]})
    return records


def sets_table(path: Path, record: dict[str, Any]) -> Table:
    """One image's predicted labels, then the other top-k labels, with probability and threshold."""
    names = ", ".join(markup(item["label"]) for item in record["labels"]) or "(none)"
    table = Table(title=f"{markup(path)}: {names}", title_justify="left")
    for column, justify in (("label", "left"), ("probability", "right"), ("threshold", "right"),
                            ("predicted", "center")):
        table.add_column(column, justify=justify)
    shown = record["labels"] + [item for item in record["top"] if not item["predicted"]]
    for item in shown:
        table.add_row(markup(item["label"]), f"{100 * item['probability']:.2f}%", f"{item['threshold']:.3f}",
                      "yes" if item["predicted"] else "")
    return table


def as_json(paths: list[Path], results: list[list[tuple[str, float]]], cams: list[Path] | None = None) -> str:
    records: list[dict[str, Any]] = [
        {"image": str(path), "top": [{"class": name, "probability": prob} for name, prob in top]}
        for path, top in zip(paths, results)
    ]
    for record, cam in zip(records, cams or []):
        record["cam"] = str(cam)
    return json.dumps(records, indent=2)


def as_table(path: Path, top: list[tuple[str, float]], cam: Path | None = None) -> Table:
    table = Table(title=markup(path), title_justify="left", caption=f"cam: {markup(cam)}" if cam else None,
                  caption_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    for rank, (name, prob) in enumerate(top, 1):
        table.add_row(str(rank), markup(name), f"{100 * prob:.2f}%")
    return table


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top-k={args.top_k}: must be >= 1")
    check_device(args.device)
    cams = cam_paths(args.images, args.cam_dir) if args.cam else None
    saved = load_run(args.run_dir, args.checkpoint, resolve_device(args.device))
    images = load_images(args.images, saved.input_shape, saved.resize)
    if saved.task == "multilabel":
        _print_sets(args, saved, images)
        return
    results = predict(saved, images, args.top_k)
    if cams is not None:
        write_cams(saved, images, [saved.classes.index(top[0][0]) for top in results], cams)
    if args.json:
        sys.stdout.write(as_json(args.images, results, cams) + "\n")
        return
    console = Console(highlight=False)
    for i, (path, top) in enumerate(zip(args.images, results)):
        console.print(as_table(path, top, cams[i] if cams else None))


def _print_sets(args: Any, saved: SavedRun, images: torch.Tensor) -> None:
    """Multi-label output: each image's predicted label set, as tables or JSON."""
    if args.cam:
        raise ConfigError("--cam maps one predicted class, and this run predicts a set of labels per image; drop "
                          "--cam")
    records = predict_sets(saved, images, args.top_k)
    if args.json:
        sys.stdout.write(json.dumps([{"image": str(path), **record} for path, record in zip(args.images, records)],
                                    indent=2) + "\n")
        return
    console = Console(highlight=False)
    for path, record in zip(args.images, records):
        console.print(sets_table(path, record))


def main() -> None:
    """Console-script entry point of cnntrain-predict."""
    run_command(_main)


if __name__ == "__main__":
    main()
