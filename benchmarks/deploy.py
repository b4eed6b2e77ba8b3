"""Deployment formats side by side, through cnntrain-bench's own code, for a run this script trains (or RUN_DIR).

For one finished run it calls cnntrain.inference.bench (what `cnntrain-bench RUN_DIR` runs): the eager model in
float32 and bf16, torch.compile (--compile), TorchScript, torch.export, ONNX and OpenVINO in float32 and int8, each
scored on the run's test split (up to --images) and timed at batch 1 (p50/p95) and batch 32, formats interleaved
round by round; then today's baseline before issue 30 (the legacy TorchScript-based ONNX exporter) timed against
eager in the same way; then whole `cnntrain-predict` processes on one image: from the ONNX file (no torch) against
from the run directory. Ratios are within this one process, so load on a shared machine moves every row alike
(it still moves the figures: say where they were taken). Usage:

    python benchmarks/deploy.py                          # a tiny cnn2 run on generated 28x28 IDX digits
    python benchmarks/deploy.py --preset speedrun-mnist  # experiment=mnist-speedrun on the real MNIST
                                                         #   (CNNTRAIN_DATA_ROOT must hold MNIST/raw)
    python benchmarks/deploy.py --preset resnet18-64     # ResNet-18 at 64x64 on a generated RGB image folder
    python benchmarks/deploy.py --run outputs/2026-12-01/10-00-00 --images 1000
    python benchmarks/deploy.py --preset resnet18-64 trainer.epochs=1   # overrides for the run it trains
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnntrain.inference import bench_timing, export_check
from cnntrain.inference.bench import FORMATS, Options, bench_run
from cnntrain.inference.bench_table import table_lines
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.export import export_run
from cnntrain.inference.load import load_run
from cnntrain.inference.runtime import as_float, load_runner

REPO = Path(__file__).resolve().parents[1]
QUIET = ("report.plots=false", "trainer.progress=false", "device=cpu")
PRESETS = {
    "tiny": ("model=cnn2", "trainer.epochs=2", "trainer.batch_size=64"),
    "speedrun-mnist": ("experiment=mnist-speedrun",),
    "resnet18-64": (
        "dataset=imagefolder",
        "model=resnet18",
        "dataset.image_size=[64,64]",
        "dataset.channels=3",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "optimizer.lr=0.001",
    ),
}


def train(folder: Path, preset: str, overrides: list[str]) -> Path:
    """The preset's run, trained by `python -m cnntrain` on its data: generated IDX digits (tiny), the real MNIST
    under CNNTRAIN_DATA_ROOT (speedrun-mnist), or a generated 64x64 RGB image folder of 3 shapes (resnet18-64:
    there is no CIFAR here, and nothing is downloaded)."""
    sys.path.insert(0, str(REPO / "tests"))
    env = dict(os.environ)
    extra: list[str] = []
    if preset == "tiny":
        from synthetic_idx import write_idx_dataset

        write_idx_dataset(folder / "data", "MNIST", n_train=2000, n_test=500, seed=0)
        env["CNNTRAIN_DATA_ROOT"] = str(folder / "data")
    elif preset == "resnet18-64":
        from synthetic_images import make_folder

        make_folder(folder / "images", rgb=True, size=64, per_class=400, test_per_class=200, seed=0)
        extra = [f"dataset.root={folder / 'images'}"]
    run_dir = folder / "run"
    argv = [sys.executable, "-m", "cnntrain", *PRESETS[preset], *QUIET, *extra, *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    print(f"trained {preset} in {time.perf_counter() - started:.0f} s: {run_dir}")
    os.environ.update({k: v for k, v in env.items() if k == "CNNTRAIN_DATA_ROOT"})
    return run_dir


def legacy_baseline(run_dir: Path, folder: Path, images: int, runs: int) -> Path:
    """Today's path before issue 30, the TorchScript-based ONNX exporter (opset 17), timed against eager fp32 and
    the dynamo ONNX file, interleaved; returns the dynamo file (for the predict processes)."""
    saved = load_run(run_dir)
    module = ImageClassifier(saved, export_head=True).cpu()
    legacy = folder / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.rand(1, *saved.input_shape),),
            str(legacy),
            input_names=["images"],
            output_names=["outputs"],
            dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    current = folder / "dynamo" / "model.onnx"
    current.parent.mkdir()
    export_run(saved, "onnx", current)
    test = export_check.first_images(export_check.run_data(saved).test, images)[0]
    one, batch = as_float(test[:1]), as_float(bench_timing.batch_of(test))

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    runners = {
        "eager fp32": eager,
        "onnx legacy": load_runner(legacy, "onnx"),
        "onnx dynamo": load_runner(current, "onnx"),
    }
    timings = {name: bench_timing.Timing() for name in runners}
    for _ in range(bench_timing.ROUNDS):
        for name, run in runners.items():
            timings[name].keep_best(bench_timing.measure(run, one, batch, runs))
    base = timings["eager fp32"]
    for name, t in timings.items():
        print(
            f"  {name:<13} p50 {t.p50_ms:8.3f} ms ({base.p50_ms / t.p50_ms:5.2f}x)  "
            f"b32 {t.throughput:9,.0f} img/s ({t.throughput / base.throughput:5.2f}x)"
        )
    return current


def predict_processes(run_dir: Path, onnx: Path, image: Path, rounds: int) -> None:
    """Whole `cnntrain-predict` processes, one image: from the ONNX file (no torch) against from the run directory,
    interleaved, median of `rounds` each (python -m, as the console script runs the same main)."""
    commands = {"predict model.onnx": [str(onnx), str(image)], "predict RUN_DIR": [str(run_dir), str(image)]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "cnntrain.commands.predict", *argv], check=True, stdout=subprocess.DEVNULL
            )
            times[name].append(time.perf_counter() - started)
    median = {name: float(np.median(values)) for name, values in times.items()}
    print(
        f"whole process, one image, median of {rounds}: "
        + ", ".join(f"{n} {t:.2f} s" for n, t in median.items())
        + f"; ratio {median['predict RUN_DIR'] / median['predict model.onnx']:.1f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="cnntrain overrides for the run this script trains")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny", help="the run to train (without --run)")
    p.add_argument("--run", type=Path, default=None, help="an existing run directory (else the preset is trained)")
    p.add_argument("--images", type=int, default=2000, help="test images scored per format")
    p.add_argument("--latency-runs", type=int, default=100, help="batch-1 calls timed per format and round")
    p.add_argument("--compile", action="store_true", help="also torch.compile the eager model")
    p.add_argument("--processes", type=int, default=5, help="whole predict processes timed per kind")
    p.add_argument("--threads", type=int, default=None, help="every runtime's threads (cnntrain-bench --threads)")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    run_dir = args.run or train(folder, args.preset, args.overrides)
    formats = tuple(FORMATS)  # every row, TorchScript (legacy) included
    options = Options(
        formats=formats, runs=args.latency_runs, images=args.images, compile=args.compile, threads=args.threads
    )
    started = time.perf_counter()
    result = bench_run(run_dir, options, say=lambda line: print(f"  {line}"))
    print(f"\nbench in {time.perf_counter() - started:.0f} s (exports, scoring, timing)")
    print("\n".join(table_lines(result)))
    print("\ntoday's baseline: the legacy ONNX exporter against eager fp32 and the dynamo exporter, same timing")
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the baseline's eager row; its ONNX files keep ONNX Runtime's default
    onnx = legacy_baseline(run_dir, folder, args.images, args.latency_runs)
    test = export_check.first_images(export_check.run_data(load_run(run_dir)).test, 1)[0][0]
    image = folder / "one.png"
    Image.fromarray(test.transpose(1, 2, 0).squeeze(-1) if test.shape[0] == 1 else test.transpose(1, 2, 0)).save(image)
    predict_processes(run_dir, onnx, image, args.processes)


if __name__ == "__main__":
    main()
