"""Deployment formats side by side: accuracy, agreement with eager, batch-1 latency, batch-32 throughput, file size.

In one process, for one finished run (RUN_DIR, or a tiny run this script trains on generated IDX data), it exports
the model to every format cnntrain-export writes, plus the legacy ONNX exporter as today's baseline, and for each
measures on the run's test split (up to --images):

  accuracy (mAP for a multi-label run) and top-1 agreement with the eager model
  p50 / p95 latency of one image (batch 1), over --latency-runs calls after a warm-up
  throughput at batch 32, images/s, best of --rounds
  file size
  and a whole `cnntrain-predict` process on one image: from the ONNX file (no torch) against from the run directory

Ratios are against eager float32 measured in the same process, formats interleaved round by round, so load on
a shared machine moves every row alike (it still moves the figures: say where they were taken). The threads are
each runtime's default (all cores), printed with the table. Usage:

    python benchmarks/deploy.py                               # a tiny cnn2 run on generated 28x28 data
    python benchmarks/deploy.py --run outputs/2026-12-01/10-00-00 --images 1000
    python benchmarks/deploy.py model=speedrun-cnn trainer.epochs=3   # overrides for the run it trains
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnntrain.inference import export_check
from cnntrain.inference.classifier import ImageClassifier
from cnntrain.inference.export import FORMATS, export_run
from cnntrain.inference.load import load_run
from cnntrain.inference.runtime import as_float, load_runner

REPO = Path(__file__).resolve().parents[1]
TINY = (
    "model=cnn2",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "report.plots=false",
    "trainer.progress=false",
    "device=cpu",
)
Runner = Callable[[np.ndarray], np.ndarray]


def train_tiny(folder: Path, overrides: list[str]) -> Path:
    """A small run on generated IDX digits (the tests' generator, no download), trained by `python -m cnntrain`."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic_idx import write_idx_dataset

    write_idx_dataset(folder / "data", "MNIST", n_train=2000, n_test=500, seed=0)
    os.environ["CNNTRAIN_DATA_ROOT"] = str(folder / "data")
    run_dir = folder / "run"
    argv = [sys.executable, "-m", "cnntrain", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return run_dir


def legacy_onnx(module: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """Today's path before issue 30: the TorchScript-based exporter, opset 17."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.rand(1, *shape),),
            str(path),
            input_names=["images"],
            output_names=["outputs"],
            dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def eager_runner(module: torch.nn.Module) -> Runner:
    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(images)).numpy()

    return run


def latency(run: Runner, image: np.ndarray, calls: int) -> tuple[float, float]:
    for _ in range(5):
        run(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50)) * 1e3, float(np.percentile(times, 95)) * 1e3


def throughput(run: Runner, batch: np.ndarray, seconds: float = 1.0) -> float:
    run(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in [path, path.with_suffix(".bin")] if p.is_file())


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
        f"\nwhole process, one image, median of {rounds}: "
        + ", ".join(f"{n} {t:.2f} s" for n, t in median.items())
        + f"; ratio {median['predict RUN_DIR'] / median['predict model.onnx']:.1f}x"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="cnntrain overrides for the tiny run this script trains")
    p.add_argument("--run", type=Path, default=None, help="an existing run directory (else a tiny run is trained)")
    p.add_argument("--images", type=int, default=512, help="test images for accuracy and agreement")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    run_dir = args.run or train_tiny(folder, args.overrides)
    saved = load_run(run_dir)
    module = ImageClassifier(saved, export_head=True).cpu()
    data = export_check.run_data(saved)
    images, labels = export_check.first_images(data.test, args.images)
    eager = export_check.eager_outputs(module, images)
    kind = "probabilities" if saved.thresholds is not None else "logits"

    files: dict[str, tuple[Path, Runner]] = {}
    legacy = folder / "legacy.onnx"
    legacy_onnx(module, saved.input_shape, legacy)
    files["onnx legacy (today)"] = (legacy, load_runner(legacy, "onnx"))
    for fmt, int8 in (
        ("torchscript", False),
        ("pt2", False),
        ("onnx", False),
        ("onnx", True),
        ("openvino", False),
        ("openvino", True),
    ):
        path = folder / f"{fmt}{'-int8' if int8 else ''}" / f"model{FORMATS[fmt]}"
        path.parent.mkdir()
        started = time.perf_counter()
        export_run(saved, fmt, path, int8=int8, say=lambda line: print(f"  {line}"))
        print(f"exported {fmt}{' int8' if int8 else ''} in {time.perf_counter() - started:.1f} s")
        if fmt == "torchscript":
            from cnntrain.inference.export_torchscript import runner

            files[fmt] = (path, runner(path))
        else:
            files[f"{fmt}{' int8' if int8 else ''}"] = (path, load_runner(path, fmt))

    rows: dict[str, dict[str, float]] = {"eager fp32": {"size": float("nan")}}  # no file: the checkpoint
    runners: dict[str, Runner] = {"eager fp32": eager_runner(module)}
    for name, (path, run) in files.items():
        runners[name] = run
        rows[name] = {"size": size(path) / 1e6}
    for name, run in runners.items():
        check = export_check.compare(run, eager, images, labels, kind, saved.thresholds)
        rows[name].update(acc=check.exported, agree=100 * check.top1_agreement)
    one = as_float(images[:1])
    batch = as_float(np.resize(images, (32, *images.shape[1:])))
    for _ in range(args.rounds):  # interleaved: load on the machine moves every format alike
        for name, run in runners.items():
            p50, p95 = latency(run, one, args.latency_runs)
            rows[name]["p50"] = min(rows[name].get("p50", 1e9), p50)
            rows[name]["p95"] = min(rows[name].get("p95", 1e9), p95)
            rows[name]["tput"] = max(rows[name].get("tput", 0.0), throughput(run, batch))
    image = folder / "one.png"
    Image.fromarray(
        images[0].transpose(1, 2, 0).squeeze(-1) if images.shape[1] == 1 else images[0].transpose(1, 2, 0)
    ).save(image)
    predict_processes(run_dir, files["onnx"][0], image, args.rounds * 2)
    base = rows["eager fp32"]
    metric = "mAP" if kind == "probabilities" else "acc"
    print(
        f"\nrun {run_dir} ({saved.config.model.name}, {'x'.join(map(str, saved.input_shape))}), {len(images)} test "
        f"images; torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}"
    )
    print(
        f"{'format':<22}{metric + ' %':>8}{'agree %':>9}{'p50 ms':>9}{'p95 ms':>9}{'b1 x':>7}"
        f"{'b32 img/s':>11}{'b32 x':>7}{'MB':>7}"
    )
    for name, row in rows.items():
        print(
            f"{name:<22}{row['acc']:>8.2f}{row['agree']:>9.2f}{row['p50']:>9.3f}{row['p95']:>9.3f}"
            f"{base['p50'] / row['p50']:>7.2f}{row['tput']:>11.0f}{row['tput'] / base['tput']:>7.2f}"
            f"{row['size']:>7.2f}"
        )


if __name__ == "__main__":
    main()
