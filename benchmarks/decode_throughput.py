"""Decode throughput: how fast image files become training tensors, against the usual torchvision pipeline.

In one process, on one JPEG folder (<folder>/train/<class>/*.jpg; generated in a temp dir unless --folder is
given, once per --size), with the same number of worker processes each way, it times:

  (a) cnntrain cache build      ImageReader.load with dataset.in_memory=true: the process pool decodes every file
                                into one uint8 tensor and writes the cache (the cache is removed before each round)
  (b) cnntrain streamed, 1st    dataset.in_memory=false: the up-front header check, then one epoch of LazyImages
                                batches decoded by DataLoader workers
  (c) torchvision, 1st epoch    ImageFolder + ToTensor through a DataLoader, one epoch (the tutorial pipeline)
  (d) cnntrain shards, 1st      dataset=webdataset: the same JPEGs written once (untimed) into 8 tar shards (6 train,
                                1 val, 1 test); indexing them from scratch (as a first run does: later runs read the
                                cached index) and one epoch of the training shards streamed by DataLoader workers
                                through the shuffle buffer (needs webdataset)
  (e) cnntrain streamed, later  a second epoch of (b)'s LazyImages (the header check is not repeated)
  (f) cnntrain shards, later    a second epoch of (d)'s training shards (indexing is not repeated)
  (g) torchvision, later epoch  a second epoch of (c)'s DataLoader

and prints images/s and the ratios against torchvision (above 1: cnntrain is faster): first epochs against (c),
later epochs against (g). Every image is decoded once per epoch; (c) gives float tensors and cnntrain uint8, as
each trains. Machines here are noisy, so the methods run --rounds times, interleaved, and the best round counts.
Usage:

    python benchmarks/decode_throughput.py                                 2,000 96x96 JPEGs, 2 workers
    python benchmarks/decode_throughput.py --images 10000 --size 32 224 --rounds 2   issue 34's figures
    python benchmarks/decode_throughput.py --images 20000 --workers 8 --rounds 3
    python benchmarks/decode_throughput.py --folder /data/my-images --workers 4
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import TensorSplit, iterate_batches
from cnntrain.data.image_cache import fallback_cache_dir
from cnntrain.data.image_files import ImageReader
from cnntrain.data.images import image_input_shape
from cnntrain.data.sources.class_folders import scan_folder

CLASSES = 10


def make_jpegs(root: Path, count: int, size: int, seed: int = 0) -> None:
    """count RGB JPEGs of size x size in CLASSES class folders: smooth colour plus noise, like photos compress."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    for i in range(count):
        folder = root / "train" / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0, 255, 3)
        base = np.stack([a * x, b * y, c * (1 - x) * y], axis=-1)
        pixels = (base + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None, help="an image folder (default: generate JPEGs)")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to generate (default 2000)")
    parser.add_argument("--size", type=int, nargs="+", default=[96], help="their side in pixels, one run per size")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes, each way (default 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of (b) and (c) (default 128)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the best of each counts")
    args = parser.parse_args()

    for size in [None] if args.folder else args.size:
        temp = None if args.folder else Path(tempfile.mkdtemp(prefix="cnntrain-decode-"))
        try:
            root = args.folder or temp
            if temp is not None:
                make_jpegs(temp, args.images, size)
            run(root, args.workers, args.batch_size, args.rounds)
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)


def run(root: Path, workers: int, batch_size: int, rounds: int) -> None:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    cfg = DatasetConfig(name="bench", root=str(root), kind="imagefolder")
    scan = scan_folder(cfg)
    files = scan.train_files
    shape = image_input_shape(cfg, files[0][0])
    n = len(files)
    cache = Path(tempfile.mkdtemp(prefix="cnntrain-decode-cache-"))  # where a read-only folder would cache

    def cache_build() -> float:
        remove_bench_cache(root, cache)
        start = time.perf_counter()
        images, _ = ImageReader(num_workers=workers, cache_dir=str(cache)).load(files, shape, root, "bench")
        assert images.shape[0] == n
        return time.perf_counter() - start

    def streamed() -> tuple[float, float]:
        start = time.perf_counter()
        lazy, labels = ImageReader(in_memory=False, num_workers=workers).load(files, shape, root, "bench")
        times = []
        for epoch in range(2):
            generator = torch.Generator().manual_seed(epoch)
            batches = iterate_batches(TensorSplit(lazy, labels), batch_size, shuffle=True, generator=generator)
            assert sum(len(y) for _, y in batches) == n
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
        return times[0], times[1]

    def torchvision_loader() -> tuple[float, float]:
        start = time.perf_counter()
        classes_under = root / "train" if (root / "train").is_dir() else root
        data = datasets.ImageFolder(str(classes_under), transform=transforms.ToTensor())
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers)
        times = []
        for _ in range(2):
            assert sum(len(y) for _, y in loader) == len(data)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
        return times[0], times[1]

    shard_dir = Path(tempfile.mkdtemp(prefix="cnntrain-decode-shards-"))
    shards = write_shards(files, shard_dir)

    def shard_stream() -> float:
        from cnntrain.config.compose import compose_train
        from cnntrain.config.validate import validate
        from cnntrain.data.loading import load_data

        stats = ",".join(["0.5"] * shape[0]), ",".join(["0.25"] * shape[0])  # given: no statistics pass to time
        cfg = validate(
            compose_train(
                [
                    "dataset=webdataset",
                    *(f"dataset.{split}=[{','.join(paths)}]" for split, paths in shards.items()),
                    f"dataset.mean=[{stats[0]}]",
                    f"dataset.std=[{stats[1]}]",
                    f"dataset.num_workers={workers}",
                ]
            )
        )
        shutil.rmtree(fallback_cache_dir(shard_dir), ignore_errors=True)  # timed as a first run: indexing every shard
        start = time.perf_counter()
        data = load_data(cfg.dataset, seed=0)
        times = []
        for epoch in range(2):
            generator = torch.Generator().manual_seed(epoch)
            seen = sum(len(y) for _, y in iterate_batches(data.train, batch_size, shuffle=True, generator=generator))
            assert seen == len(data.train)
            times.append((time.perf_counter() - start) * n / seen)  # seconds per n training images
            start = time.perf_counter()
        return times[0], times[1]

    names = {
        "a": "(a) cnntrain cache build",
        "b": "(b) cnntrain streamed, 1st epoch",
        "c": "(c) torchvision, 1st epoch",
        "d": "(d) cnntrain shards, 1st epoch",
        "e": "(e) cnntrain streamed, later",
        "f": "(f) cnntrain shards, later",
        "g": "(g) torchvision, later epoch",
    }
    methods = {"a": cache_build, "be": streamed, "cg": torchvision_loader, "df": shard_stream}
    best: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for keys, method in methods.items():
                took = method()
                for key, seconds in zip(keys, took if isinstance(took, tuple) else (took,)):
                    best[key] = max(best.get(key, 0.0), n / seconds)
    finally:
        remove_bench_cache(root, cache)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(shard_dir, ignore_errors=True)

    print(
        f"{n} images {'x'.join(map(str, shape))} under {root}, {workers} worker process(es), batch {batch_size}, "
        f"best of {rounds} round(s)"
    )
    for key, name in names.items():
        print(f"  {name:<34} {best[key]:>9.0f} images/s   {n / best[key]:>7.2f} s per {n} images")
    for top, bottom, what in (
        ("b", "c", "cnntrain streamed / torchvision, first epochs"),
        ("a", "c", "cnntrain cache build / torchvision first epoch"),
        ("d", "c", "cnntrain shards with indexing / torchvision, first epochs"),
        ("e", "g", "cnntrain streamed / torchvision, later epochs"),
        ("f", "g", "cnntrain shards / torchvision, later epochs"),
    ):
        print(f"  ratio {top}/{bottom} ({what}, images/s) = {best[top] / best[bottom]:.3f}")


def write_shards(files: list[tuple[Path, int]], folder: Path, count: int = 8) -> dict[str, list[str]]:
    """The files' bytes as WebDataset samples (<key>.jpg + <key>.cls) in `count` shards: the last two are the
    validation and the test split, the rest train. Returns each split's shard paths."""
    import webdataset as wds

    per_shard = -(-len(files) // count)
    with wds.ShardWriter(str(folder / "bench-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i, (path, label) in enumerate(files):
            sink.write({"__key__": f"{i:07d}", path.suffix.lower().lstrip("."): path.read_bytes(), "cls": str(label)})
    (folder / "classes.txt").write_text("".join(f"{label}\n" for label in range(max(lb for _, lb in files) + 1)))
    paths = sorted(str(p) for p in folder.glob("bench-*.tar"))
    return {"train": paths[:-2], "val": paths[-2:-1], "test": paths[-1:]}


def remove_bench_cache(root: Path, cache: Path) -> None:
    """The cache files this benchmark wrote (split 'bench'), never a real run's."""
    for folder in (fallback_cache_dir(root, str(cache)),):
        for path in folder.glob("bench-*.pt"):
            path.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


if __name__ == "__main__":
    main()
