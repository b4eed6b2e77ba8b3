"""`cnntrain-predict RUN_DIR IMAGE...`: classify image files with a finished run's model.

Each image file is converted the way the training images were (grayscale or RGB, resized to the model's
input size with the run's dataset.resize, the run's normalisation), then the top-k classes are shown per
image, or printed as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.config.validate import check_device
from cnntrain.data.images import decode_image
from cnntrain.errors import ConfigError
from cnntrain.models.tta import predict_with_tta
from cnntrain.training.accel import resolve_device
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
    return p


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


def as_json(paths: list[Path], results: list[list[tuple[str, float]]]) -> str:
    records: list[dict[str, Any]] = [
        {"image": str(path), "top": [{"class": name, "probability": prob} for name, prob in top]}
        for path, top in zip(paths, results)
    ]
    return json.dumps(records, indent=2)


def as_table(path: Path, top: list[tuple[str, float]]) -> Table:
    table = Table(title=str(path), title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("class")
    table.add_column("probability", justify="right")
    for rank, (name, prob) in enumerate(top, 1):
        table.add_row(str(rank), name, f"{100 * prob:.2f}%")
    return table


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_args(argv)
    if args.top_k < 1:
        raise ConfigError(f"--top-k={args.top_k}: must be >= 1")
    check_device(args.device)
    saved = load_run(args.run_dir, args.checkpoint, resolve_device(args.device))
    results = predict(saved, load_images(args.images, saved.input_shape, saved.resize), args.top_k)
    if args.json:
        sys.stdout.write(as_json(args.images, results) + "\n")
        return
    console = Console(highlight=False)
    for path, top in zip(args.images, results):
        console.print(as_table(path, top))


def main() -> None:
    """Console-script entry point of cnntrain-predict."""
    run_command(_main)


if __name__ == "__main__":
    main()
