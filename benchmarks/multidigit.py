"""Multi-digit MNIST: a multi-label dataset built from the real MNIST digits, for measuring multi-label training.

Each image is a CANVAS x CANVAS (56x56) black canvas with 2 to 4 MNIST digits pasted at random places (the
brightest pixel wins where two overlap, at most MAX_OVERLAP of a digit's box hidden under earlier ones); its label
set is the digits present (a digit drawn twice counts once). Training canvases use MNIST's training digits,
test canvases its test digits, so no digit image is seen on both sides. Written as PNGs plus one labels.csv
(path, labels split by ' ', split) into the folder you pass, never into the repository:

    python benchmarks/multidigit.py /tmp/multidigit --train 8000 --test 2000
    cnntrain dataset=labels dataset.file=/tmp/multidigit/labels.csv dataset.label_delimiter="' '" model=cnn3 ...

The MNIST IDX files are read from --mnist (a folder holding train-images-idx3-ubyte and the other three).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnntrain.data.sources.torchvision_datasets import read_idx

CANVAS = 56
DIGIT = 28
MAX_OVERLAP = 0.25  # share of a new digit's box that may lie over earlier digits' boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write img/*.png and labels.csv into")
    parser.add_argument("--mnist", type=Path, default=Path("data/MNIST/raw"), help="folder of the MNIST IDX files")
    parser.add_argument("--train", type=int, default=8000, help="training canvases (val is split off them)")
    parser.add_argument("--test", type=int, default=2000, help="test canvases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for split, prefix, count in (("train", "train", args.train), ("test", "t10k", args.test)):
        images = read_idx(args.mnist / f"{prefix}-images-idx3-ubyte", 3).numpy()
        labels = read_idx(args.mnist / f"{prefix}-labels-idx1-ubyte", 1).numpy()
        folder = args.out / "img" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            canvas, digits = compose(images, labels, rng)
            relative = f"img/{split}/{i:05d}.png"
            Image.fromarray(canvas, "L").save(args.out / relative)
            rows.append({"path": relative, "labels": " ".join(str(d) for d in sorted(digits)), "split": split})
    with open(args.out / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    counts = torch.tensor([[str(d) in row["labels"].split() for d in range(10)] for row in rows]).sum(0)
    print(f"wrote {len(rows)} canvases and {args.out / 'labels.csv'}; images per digit: {counts.tolist()}")


def compose(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, set[int]]:
    """One canvas of 2-4 random digits and the set of digits on it."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    taken = np.zeros((CANVAS, CANVAS), dtype=bool)
    digits: set[int] = set()
    for _ in range(int(rng.integers(2, 5))):
        for _attempt in range(20):
            top, left = (int(v) for v in rng.integers(0, CANVAS - DIGIT + 1, size=2))
            if taken[top : top + DIGIT, left : left + DIGIT].mean() <= MAX_OVERLAP:
                break
        index = int(rng.integers(len(images)))
        region = canvas[top : top + DIGIT, left : left + DIGIT]
        np.maximum(region, images[index], out=region)
        taken[top : top + DIGIT, left : left + DIGIT] = True
        digits.add(int(labels[index]))
    return canvas, digits


if __name__ == "__main__":
    main()
