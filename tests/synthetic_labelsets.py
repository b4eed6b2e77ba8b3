"""Small multi-label image sets drawn for the tests: each image holds any subset of three shapes (a circle
top-left, a cross top-right, a square at the bottom), its label set being the shapes drawn; some hold none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from synthetic_images import write_label_file

SHAPES = ("circle", "cross", "square")


def draw_set(present: list[bool], size: int, rng: np.random.Generator) -> Image.Image:
    canvas = rng.normal(30, 15, size=(size, size)).clip(0, 255)
    y, x = np.mgrid[:size, :size]
    r = size // 6
    centres = ((size // 4, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, size // 2))
    for shape, (on, (cy, cx)) in enumerate(zip(present, centres)):
        if not on:
            continue
        cy, cx = cy + rng.integers(-1, 2), cx + rng.integers(-1, 2)
        if shape == 0:
            mask = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        elif shape == 1:
            mask = ((abs(y - cy) < 1.5) | (abs(x - cx) < 1.5)) & (abs(y - cy) < r) & (abs(x - cx) < r)
        else:
            mask = (abs(y - cy) < r) & (abs(x - cx) < r)
        canvas[mask] = 220
    return Image.fromarray(canvas.astype(np.uint8), "L")


def make_label_sets(root: Path, count: int = 60, size: int = 16, seed: int = 0) -> list[tuple[str, list[str]]]:
    """`count` images under root/img/, as (path relative to root, the shapes drawn); image i holds the shapes of
    the bits of i % 8 (every set, the empty one included, comes up equally often)."""
    rng = np.random.default_rng(seed)
    drawn = []
    for i in range(count):
        present = [bool((i % 8) >> bit & 1) for bit in range(3)]
        relative = f"img/{i}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        draw_set(present, size, rng).save(root / relative)
        drawn.append((relative, [name for name, on in zip(SHAPES, present) if on]))
    return drawn


def write_sets(root: Path, form: str = "delimited", count: int = 60, size: int = 16) -> Path:
    """A label file over make_label_sets: delimited (labels.csv, labels split by ' '), columns (one 0/1 column
    per shape) or jsonl (a JSON list per row)."""
    drawn = make_label_sets(root, count, size)
    if form == "columns":
        return write_label_file(
            root / "labels.csv", [{"path": p, **{s: int(s in labels) for s in SHAPES}} for p, labels in drawn]
        )
    if form == "jsonl":
        return write_label_file(root / "labels.jsonl", [{"path": p, "labels": labels} for p, labels in drawn])
    return write_label_file(root / "labels.csv", [{"path": p, "labels": " ".join(labels)} for p, labels in drawn])
