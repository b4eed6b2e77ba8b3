"""What keying the decoded-image cache by content costs: hashing every file's bytes against decoding them.

The in-memory image cache (cnntrain.data.image_cache) is keyed by a hash of every file's bytes, so a cache cannot
stand for images it was not made from. A second run then reads and hashes every file instead of decoding it;
this measures what that costs. In one process, on <images> small PNGs (generated in a temp dir unless --folder is
given), it times, best of --rounds interleaved rounds:

  (a) hash     cnntrain.data.image_cache.content_digest over every file (what a cache hit costs on top of
               loading the cache file)
  (b) decode   cnntrain.data.images.decode_array of every file to the target shape, one process (what a cache
               miss costs per file)

and prints both in files/s and the ratio a/b (the share of a decode that the content key costs). Usage:

    python benchmarks/cache_key.py                          5,000 28x28 grayscale PNGs, 3 rounds
    python benchmarks/cache_key.py --images 5000 --size 96 --rounds 5
    python benchmarks/cache_key.py --folder /data/my-images
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnntrain.data.image_cache import content_digest
from cnntrain.data.images import IMAGE_SUFFIXES, decode_array


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--size", type=int, default=28, help="side of the generated PNGs (default 28)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--folder", type=Path, default=None, help="time these images instead of generated ones")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(args.folder) if args.folder else _generate(Path(tmp), args.images, args.size)
        with Image.open(files[0]) as first:
            shape = (1 if first.mode in ("L", "1") else 3, first.height, first.width)
        hash_s, decode_s = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            content_digest(files)
            hash_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for path in files:
                decode_array(path, *shape)
            decode_s.append(time.perf_counter() - start)
    n = len(files)
    best_hash, best_decode = min(hash_s), min(decode_s)
    print(f"{n} files, target shape {'x'.join(map(str, shape))}, best of {args.rounds} rounds")
    print(f"(a) hash    {n / best_hash:12,.0f} files/s  ({best_hash:.3f} s)")
    print(f"(b) decode  {n / best_decode:12,.0f} files/s  ({best_decode:.3f} s)")
    print(f"ratio a/b (hashing time / decoding time): {best_hash / best_decode:.3f}")


def _generate(folder: Path, count: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(path)
        files.append(path)
    return files


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


if __name__ == "__main__":
    main()
