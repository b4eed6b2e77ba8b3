"""What the bounded readers of issue 29 cost: this checkout against a base commit, interleaved in one run.

The base commit's `cnntrain/` and `configs/` are unpacked (git archive) into a temp folder; each round then runs,
for the base tree and for this checkout in alternating order, each in a fresh process:

  (a) describe  the WebDataset source's describe() on --samples samples in 16x16 PNG shards (generated once),
                with an empty cache folder each time, so every shard is indexed (the bounded tar reader, the
                member-size check, the counted brace expansion, classes.txt through the bounded reader);
  (b) speedrun  `cnntrain experiment=mnist-speedrun` on --data-root (MNIST/raw), its whole wall time
                (skipped without --data-root).

It prints each timing, then per task the medians and the ratio this checkout / base (1.00: no cost). The
machine may be shared: read the medians and the per-round ratios, not one run.

    python benchmarks/trust_overhead.py --data-root ../shared/data
    python benchmarks/trust_overhead.py --base 03cd1fb --samples 10000 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESCRIBE = """
import sys, time
from pathlib import Path
from omegaconf import OmegaConf
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.loading import describe_data
folder, cache = sys.argv[1], sys.argv[2]
cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), {
    "name": "shards", "root": folder, "kind": "webdataset", "train": folder + "/train-{0000..0009}.tar",
    "cache_dir": cache, "num_workers": 0, "image_key": "jpg;png;jpeg;webp", "label_key": "cls"})
started = time.perf_counter()
describe_data(cfg)
print(time.perf_counter() - started)
"""


def make_shards(folder: Path, samples: int) -> None:
    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (16, 16), 128).save(png, format="PNG")
    per_shard = samples // 10
    for shard in range(10):
        with tarfile.open(folder / f"train-{shard:04d}.tar", "w") as tar:
            for index in range(per_shard):
                for suffix, data in (("png", png.getvalue()), ("cls", str(index % 3).encode())):
                    info = tarfile.TarInfo(f"s{shard}-{index:06d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (folder / "classes.txt").write_text("a\nb\nc\n")


def describe_seconds(tree: Path, folder: Path) -> float:
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(
            [sys.executable, "-c", DESCRIBE, str(folder), cache],
            env=_env(tree),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return float(out.strip().splitlines()[-1])


def speedrun_seconds(tree: Path, data_root: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cnntrain.commands.train",
                "experiment=mnist-speedrun",
                f"data_root={data_root}",
                f"hydra.run.dir={out}/run",
            ],
            env=_env(tree),
            check=True,
            capture_output=True,
            cwd=out,
        )
        return time.perf_counter() - started


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="03cd1fb", help="the commit to compare with (default: before issue 29)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-root", type=Path, default=None, help="a folder holding MNIST/raw, for the speedrun")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        base, shards = Path(temp) / "base", Path(temp) / "shards"
        base.mkdir()
        shards.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.base, "cnntrain", "configs"], check=True, capture_output=True
        ).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(base, filter="data")
        make_shards(shards, args.samples)
        trees = {"base": base, "this": REPO}
        tasks = {"describe": lambda tree: describe_seconds(tree, shards)}
        if args.data_root is not None:
            tasks["speedrun"] = lambda tree: speedrun_seconds(tree, args.data_root.resolve())
        times: dict[tuple[str, str], list[float]] = {(t, n): [] for t in tasks for n in trees}
        for round_number in range(args.rounds):
            order = list(trees) if round_number % 2 == 0 else list(reversed(trees))
            for task, measure in tasks.items():
                for name in order:
                    seconds = measure(trees[name])
                    times[task, name].append(seconds)
                    print(f"round {round_number + 1} {task:9s} {name:5s} {seconds:8.3f} s", flush=True)
        for task in tasks:
            base_median = statistics.median(times[task, "base"])
            this_median = statistics.median(times[task, "this"])
            rounds = ", ".join(f"{t / b:.3f}" for t, b in zip(times[task, "this"], times[task, "base"]))
            print(
                f"{task}: base {base_median:.3f} s, this {this_median:.3f} s (medians of {args.rounds}); "
                f"this/base {this_median / base_median:.3f}; per round {rounds}"
            )


if __name__ == "__main__":
    main()
