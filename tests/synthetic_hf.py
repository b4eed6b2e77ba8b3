"""Small Hugging Face datasets built with the real `datasets` library from drawn images (synthetic_images.draw),
and the broken ones the bad-input table names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthetic_images import CLASSES, draw


def split_of(
    n: int,
    seed: int,
    *,
    size: int = 16,
    rgb: bool = False,
    strings: bool = False,
    columns: tuple[str, str] = ("image", "label"),
):
    """n drawn images, classes in turn; labels as a ClassLabel, or as the class names (strings: no ClassLabel)."""
    import datasets

    rng = np.random.default_rng(seed)
    image, label = columns
    features = datasets.Features(
        {image: datasets.Image(), label: datasets.Value("string") if strings else datasets.ClassLabel(names=CLASSES)}
    )
    labels = [CLASSES[i % 3] if strings else i % 3 for i in range(n)]
    return datasets.Dataset.from_dict(
        {image: [draw(i % 3, size, rng, rgb) for i in range(n)], label: labels}, features=features
    )


def shapes(train: int = 36, validation: int = 9, test: int = 9, **kwargs):
    """A DatasetDict of train, validation and test (a count of 0 leaves the split out)."""
    import datasets

    parts = {"train": train, "validation": validation, "test": test}
    return datasets.DatasetDict(
        {name: split_of(n, seed, **kwargs) for seed, (name, n) in enumerate(parts.items()) if n}
    )


def with_rows(table, change):
    """The same split with change(rows) applied to its rows (images left undecoded: bytes and path)."""
    import datasets

    rows = table.cast_column("image", datasets.Image(decode=False)).to_list()
    change(rows)
    return datasets.Dataset.from_list(rows, features=table.features)


def write_bad(kind: str, folder: Path) -> Path:
    """A save_to_disk folder with one mistake: dict (none), nopics, nolabels, oneclass, broken (row 0), notrain."""
    import datasets

    parts = shapes(train=6, validation=3, test=3)
    if kind == "nopics":
        parts = datasets.DatasetDict(
            {n: t.remove_columns("image").add_column("file", ["x.png"] * len(t)) for n, t in parts.items()}
        )
    elif kind == "nolabels":
        parts = datasets.DatasetDict(
            {n: t.remove_columns("label").add_column("score", [0.5] * len(t)) for n, t in parts.items()}
        )
    elif kind == "oneclass":
        parts["train"] = with_rows(parts["train"], lambda rows: [row.update(label=0) for row in rows])
    elif kind == "broken":
        parts["train"] = with_rows(
            parts["train"], lambda rows: rows[0].update(image={"bytes": b"not a picture", "path": None})
        )
    elif kind == "notrain":
        del parts["train"]
    parts.save_to_disk(str(folder))
    return folder
