"""Small image folders (root/train/<class>/*.png|jpg, optionally root/test/...) drawn for the tests, so the
real image-folder code runs without real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "cross", "square")


def draw(label: int, size: int, rng: np.random.Generator, rgb: bool) -> Image.Image:
    """A noisy picture whose class is easy to learn: a bright shape per class at a jittered spot."""
    canvas = rng.normal(40, 20, size=(size, size)).clip(0, 255)
    y, x = np.mgrid[:size, :size]
    cy, cx = size // 2 + rng.integers(-2, 3), size // 2 + rng.integers(-2, 3)
    r = size // 4
    if label == 0:
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    elif label == 1:
        mask = (abs(y - cy) < 2) | (abs(x - cx) < 2)
    else:
        mask = (abs(y - cy) < r) & (abs(x - cx) < r)
    canvas[mask] = 220
    gray = canvas.astype(np.uint8)
    if not rgb:
        return Image.fromarray(gray, "L")
    tint = np.stack([gray, (gray * (0.5 + 0.25 * label)).astype(np.uint8), gray[::-1]], axis=-1)
    return Image.fromarray(tint, "RGB")


def make_folder(
    root: Path, *, rgb: bool, size: int, per_class: int = 30, test_per_class: int = 0, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            if not count:
                continue
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(label, size, rng, rgb).save(folder / f"{i}.{'png' if i % 3 else 'jpg'}")
    return root


def make_labelled_images(
    root: Path, *, per_class: int = 10, size: int = 16, rgb: bool = False, seed: int = 0
) -> list[tuple[str, int]]:
    """Images under root/part0/ and root/part1/ (so the folders say nothing about the class), as
    (path relative to root, class index) in a fixed, class-interleaved order."""
    rng = np.random.default_rng(seed)
    drawn = []
    for i in range(per_class):
        for label, name in enumerate(CLASSES):
            relative = f"part{i % 2}/{name}-{i}.png"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            draw(label, size, rng, rgb).save(root / relative)
            drawn.append((relative, label))
    return drawn


def write_label_file(path: Path, rows: list[dict]) -> Path:
    """rows as the label file its suffix names: CSV, TSV (a header of the first row's keys) or JSON Lines."""
    import csv
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
    return path
