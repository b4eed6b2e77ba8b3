"""How well cnntrain-audit finds planted problems in real images, and what it costs: MNIST digits as PNGs.

Writes `--train` MNIST training digits and `--test` test digits as PNGs into OUT/data (never into the repository;
the runs and audits go into OUT beside it), then:
1. label flips: `--rates` (default 5% and 10%) of the training labels moved to another class (seeded; the flipped
   rows are recorded in OUT/flips-<rate>.csv), given as a label file (path, label, split) over the same PNGs; the
   audit's flagged set and its top 1% / 5% by label quality against the flips (precision, recall);
2. the cleaned labels: the audit's cleaned_labels.csv trained with the same recipe and seed as the clean and the
   noisy labels, all three tested on the same untouched test digits;
3. a leak: `--leaks` test digits resized (28 -> 36 -> 28 pixels) and re-compressed as JPEG (quality 75), copied into
   the training split of the first rate's label file; recall of those pairs, and the pairs found besides (false
   pairs, or real duplicates MNIST holds);
4. the audit's time against one training of the same recipe (the clean one).

    python benchmarks/audit.py /tmp/audit-bench --mnist /work/shared/data/MNIST/raw --train 3000 --test 1000

Every figure comes from one run of this script; the machine's load changes the times, not the ratios' meaning.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

import cnntrain
from cnntrain.commands.audit import RECIPES
from cnntrain.data.sources.torchvision_datasets import read_idx


def write_digits(out: Path, images: np.ndarray, labels: np.ndarray, split: str) -> list[dict[str, str]]:
    rows = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = Path("img") / split / f"{i:05d}.png"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / path)
        rows.append({"path": str(path), "label": str(int(label)), "split": split})
    return rows


def leaked(out: Path, image: np.ndarray, i: int) -> str:
    """A test digit resized up and back and saved as a JPEG: a copy that no byte-for-byte hash finds."""
    picture = Image.fromarray(image).resize((36, 36), Image.BILINEAR).resize((28, 28), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=75)
    path = Path("img") / "leaks" / f"{i:05d}.jpg"
    (out / path).parent.mkdir(parents=True, exist_ok=True)
    (out / path).write_bytes(buffer.getvalue())
    return str(path)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def precision_recall(flagged: set[str], truth: set[str]) -> tuple[float, float]:
    hits = len(flagged & truth)
    return (hits / len(flagged) if flagged else 0.0), (hits / len(truth) if truth else 0.0)


def train(out: Path, name: str, file: Path, image_dir: Path, recipe: list[str], seed: int) -> tuple[float, float]:
    started = time.perf_counter()
    run = cnntrain.train(
        "dataset=labels", f"dataset.file={file}", f"dataset.image_dir={image_dir}", *recipe, f"seed={seed}",
        "dataset.num_workers=0", f"hydra.run.dir={out / 'runs' / name}",
    )  # fmt: skip
    return float(run.summary["test"]["acc"]), time.perf_counter() - started


def retrained(
    out: Path, rate: float, found: object, test: list, recipe: list, seed: int, clean: float, noisy: float
) -> dict[str, object]:
    """The cleaned training rows trained with the same recipe and seed, tested on the same untouched test digits
    as the clean and noisy runs."""
    kept = [
        {**r, "path": os.path.relpath(found.image_dir / r["path"], out / "data")}
        for r in read_csv(found.files["cleaned_labels"])
        if r["split"] != "test"
    ]
    fair = write_csv(out / "data" / f"cleaned-{rate:g}.csv", kept + test)
    cleaned, _ = train(out, f"cleaned-{rate:g}", fair, out / "data", recipe, seed)
    cost = clean - noisy
    return {
        "noisy_test_acc": noisy,
        "cleaned_test_acc": cleaned,
        "share_of_lost_accuracy_recovered": round((cleaned - noisy) / cost, 2) if cost > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mnist", type=Path, default=Path("/work/shared/data/MNIST/raw"))
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.10])
    parser.add_argument("--leaks", type=int, default=50)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse-folds", action="store_true", help="audit the fold runs an earlier run left in OUT again, train nothing"
    )
    args = parser.parse_args()
    reuse = args.reuse_folds
    out = args.out.resolve()
    rng = np.random.default_rng(args.seed)
    train_images = read_idx(args.mnist / "train-images-idx3-ubyte", 3).numpy()
    train_labels = read_idx(args.mnist / "train-labels-idx1-ubyte", 1).numpy()
    test_images = read_idx(args.mnist / "t10k-images-idx3-ubyte", 3).numpy()
    test_labels = read_idx(args.mnist / "t10k-labels-idx1-ubyte", 1).numpy()
    pick = rng.choice(len(train_images), args.train, replace=False)
    pick_test = rng.choice(len(test_images), args.test, replace=False)
    data = out / "data"  # the images and label files; the runs and audits go beside it, never into it
    clean = write_digits(data, train_images[pick], train_labels[pick], "train")
    test = write_digits(data, test_images[pick_test], test_labels[pick_test], "test")
    recipe = [*RECIPES["fast"]]
    results: dict[str, object] = {"train": args.train, "test": args.test, "folds": args.folds, "recipe": recipe}
    clean_acc = noisy_acc = one_training = 0.0
    if not reuse:
        clean_file = write_csv(data / "clean.csv", clean + test)
        clean_acc, one_training = train(out, "clean", clean_file, data, recipe, args.seed)
        results.update(clean_test_acc=clean_acc, one_training_s=round(one_training, 1))
    for n, rate in enumerate(args.rates):
        noisy = [dict(row) for row in clean]
        flipped = rng.choice(len(noisy), round(rate * len(noisy)), replace=False)
        for i in flipped:
            true = int(noisy[i]["label"])
            noisy[i]["label"] = str(int((true + rng.integers(1, 10)) % 10))
        write_csv(out / f"flips-{rate:g}.csv", [noisy[i] for i in sorted(flipped)])
        truth = {str(data / noisy[i]["path"]) for i in flipped}
        copies: dict[str, str] = {}
        if n == 0 and args.leaks:
            for j, i in enumerate(rng.choice(len(test), args.leaks, replace=False)):
                path = leaked(data, test_images[pick_test][i], j)
                copies[str(data / path)] = str(data / test[i]["path"])
                noisy.append({"path": path, "label": test[i]["label"], "split": "train"})
        file = write_csv(data / f"noisy-{rate:g}.csv", noisy + test)
        started = time.perf_counter()
        if reuse:
            found = cnntrain.audit(runs=out / f"audit-{rate:g}" / "folds", out=out / f"audit-{rate:g}-again")
        else:
            noisy_acc, _ = train(out, f"noisy-{rate:g}", file, data, recipe, args.seed)
            started = time.perf_counter()
            found = cnntrain.audit(
                "dataset=labels", f"dataset.file={file}", f"dataset.image_dir={data}", "dataset.num_workers=0",
                f"seed={args.seed}", out=out / f"audit-{rate:g}", folds=args.folds,
            )  # fmt: skip
        audit_s = time.perf_counter() - started
        issues = [r for r in read_csv(found.files["label_issues"]) if r["split"] != "test"]
        flagged = {r["key"] for r in issues}
        row: dict[str, object] = {"flips": len(truth), "flagged": len(flagged)}
        row["precision"], row["recall"] = precision_recall(flagged, truth)
        pool = len(noisy)
        for share in (0.01, 0.05):
            top = {r["key"] for r in issues[: round(share * pool)]}
            row[f"top{share:.0%}_precision"], row[f"top{share:.0%}_recall"] = precision_recall(top, truth)
        row["audit_s"] = round(audit_s, 1)
        if not reuse:
            row["audit_over_one_training"] = round(audit_s / one_training, 2)
            row.update(retrained(out, rate, found, test, recipe, args.seed, clean_acc, noisy_acc))
        if copies:
            pairs = read_csv(found.files["duplicates"])
            planted = {frozenset(p) for p in copies.items()}
            seen = {frozenset((p["key_a"], p["key_b"])) for p in pairs}
            row["leak_recall"] = len(planted & seen) / len(planted)
            row["false_pairs"] = len(seen - planted)
        results[f"flips_{rate:g}"] = row
        print(json.dumps({f"flips_{rate:g}": row}), flush=True)
    print(json.dumps(results, indent=2))
    (out / ("results-again.json" if reuse else "results.json")).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
