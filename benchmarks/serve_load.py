"""cnntrain-serve under load: throughput and p50/p95/p99 latency at 1, 8 and 32 concurrent clients.

For each model (the speedrun CNN on 28x28 grayscale digits, a ResNet-18 on 64x64 RGB images; tiny runs this script
trains on generated data: the weights do not change the timings), it starts, one after another, as real processes
on a free loopback port:

  batched     cnntrain-serve RUN_DIR                         (eager, --max-batch-size 16, --batch-timeout-ms 5)
  batch-1     cnntrain-serve RUN_DIR --max-batch-size 1      (eager, no batching)
  onnx        cnntrain-serve RUN_DIR --format onnx           (batched; ONNX Runtime was the faster exported
              format in deploy.py's table for these models; --export-format openvino measures OpenVINO instead)
  fastapi     a minimal hand-written FastAPI endpoint (below) that decodes and calls the same model per request

and sends each one the same PNG (an image of the model's input size) from 1, 8 and 32 clients (httpx, one
AsyncClient, keep-alive), --requests per client level. It also times the model called directly on one image
(decode + answer, no HTTP) to compare with the one-client p50. Every answer's status is counted: the goal is zero
errors. Ratios are within this one run; on a shared machine the absolute figures move with the load (say where
they were taken). Usage:

    python benchmarks/serve_load.py                    # both models, about 10 minutes on 2 busy cores
    python benchmarks/serve_load.py --models speedrun --requests 200
    python benchmarks/serve_load.py --baseline RUN_DIR --port 8123   # (internal) the FastAPI baseline alone
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request  # the baseline's (the serve extra brings fastapi); at the top, for its annotations
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
MODELS = {
    "speedrun": ("model=speedrun-cnn", "trainer.channels_last=false"),
    "resnet18": ("model=resnet18", "dataset=imagefolder", "dataset.image_size=[64,64]", "dataset.channels=3"),
}


def env() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    environ.pop("CNNTRAIN_SERVE_TOKEN", None)
    return environ


def train(folder: Path, name: str) -> Path:
    """A one-epoch run of `name` on generated data (the tests' generators), then its ONNX and OpenVINO exports."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic_idx import write_idx_dataset

    data = folder / "data"
    if name == "speedrun":
        write_idx_dataset(data, "MNIST", n_train=600, n_test=100, seed=0)
        where = [f"data_root={data}"]
    else:
        rng = np.random.default_rng(0)
        for split, count in (("train", 24), ("test", 8)):
            for label in range(4):
                (data / split / f"c{label}").mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(data / split / f"c{label}" / f"{i}.png")
        where = [f"dataset.root={data}"]
    run_dir = folder / name
    argv = [sys.executable, "-m", "cnntrain", *MODELS[name], *where, "trainer.epochs=1", "trainer.batch_size=32",
            "report.plots=false", "trainer.progress=false", "device=cpu", f"hydra.run.dir={run_dir}"]  # fmt: skip
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env())
    for fmt in ("onnx", "openvino"):
        command = [sys.executable, "-m", "cnntrain.commands.export", str(run_dir), "--format", fmt]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env())
    return run_dir


def one_png(shape: tuple[int, int, int]) -> bytes:
    channels, height, width = shape
    pixels = np.random.default_rng(1).integers(0, 256, (height, width) if channels == 1 else (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def direct_p50(run_dir: Path, body: bytes, calls: int = 200) -> float:
    """Milliseconds for decode + answer of one image, in this process (the model called directly)."""
    from cnntrain.data.images import NamedBytes, decode_array
    from cnntrain.serving.model import LoadedModel, ModelSource
    from cnntrain.serving.worker import model_threads

    model = LoadedModel(ModelSource(run_dir, "eager"), threads=model_threads(1))  # as a server's one worker has
    c, h, w = model.input_shape
    times = []
    for _ in range(calls + 20):
        start = time.perf_counter()
        model.answer(decode_array(NamedBytes(body, "x"), c, h, w, resize=model.resize)[None], 3)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.percentile(times[20:], 50))


class Process:
    """A server process started by `command`; it is up once `url` answers GET `health`."""

    def __init__(self, command: list[str], url: str | None = None) -> None:
        self.process = subprocess.Popen(
            command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        deadline = time.monotonic() + 300
        while url is None and time.monotonic() < deadline:  # cnntrain-serve says where it listens
            if select.select([self.process.stdout], [], [], 1.0)[0]:
                line = self.process.stdout.readline()
                if line.startswith("serving "):
                    url = line.split(" on ", 1)[1].split()[0]
            if self.process.poll() is not None:
                raise SystemExit(f"{command} ended with {self.process.returncode}")
        assert url is not None, "the server did not start within 300 s"
        self.url = url

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


async def load(url: str, body: bytes, clients: int, requests: int) -> tuple[float, list[float], int]:
    """(requests/s, latencies in ms, errors) for `requests` POSTs from `clients` concurrent clients."""
    import httpx

    latencies: list[float] = []
    errors = 0
    left = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in left:
            start = time.perf_counter()
            response = await http.post(f"{url}/predict", content=body, headers={"Content-Type": "image/png"})
            latencies.append(1000 * (time.perf_counter() - start))
            errors += response.status_code != 200

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        for _ in range(min(20, requests)):  # warm-up: connections, the worker's first batches
            await http.post(f"{url}/predict", content=body, headers={"Content-Type": "image/png"})
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return requests / wall, latencies, errors


def wait_health(url: str, seconds: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer /health within {seconds} s")


# ---- the baseline: what a team writes by hand around cnntrain's model, one request at a time ----


def baseline(run_dir: Path, port: int) -> None:
    import uvicorn

    from cnntrain.data.images import NamedBytes, decode_array
    from cnntrain.serving.model import LoadedModel, ModelSource
    from cnntrain.serving.worker import model_threads

    model = LoadedModel(ModelSource(run_dir, "eager"), threads=model_threads(1))  # the same threads as a server
    c, h, w = model.input_shape
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        image = decode_array(NamedBytes(await request.body(), "upload"), c, h, w, resize=model.resize)
        return model.answer(image[None], 3)[0]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="speedrun,resnet18")
    parser.add_argument("--requests", type=int, default=400, help="requests per client level (default 400)")
    parser.add_argument("--export-format", default="onnx", choices=("onnx", "openvino"))
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline is not None:
        baseline(args.baseline, args.port)
        return
    serve = [sys.executable, "-m", "cnntrain.commands.serve"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            run_dir = train(Path(tmp) / name, name)
            from cnntrain.serving.model import LoadedModel, ModelSource

            body = one_png(LoadedModel(ModelSource(run_dir, "eager")).input_shape)
            direct = direct_p50(run_dir, body)
            print(f"{name}: the model called directly (decode + answer, batch 1): p50 {direct:.2f} ms", flush=True)
            port = free_port()
            servers = [
                ("batched", [*serve, str(run_dir), "--port", "0"], None),
                ("batch-1", [*serve, str(run_dir), "--port", "0", "--max-batch-size", "1"], None),
                (args.export_format, [*serve, str(run_dir), "--port", "0", "--format", args.export_format], None),
                ("fastapi", [sys.executable, __file__, "--baseline", str(run_dir), "--port", str(port)],
                 f"http://127.0.0.1:{port}"),
            ]  # fmt: skip
            for label, command, url in servers:
                server = Process(command, url)
                wait_health(server.url)
                for clients in LEVELS:
                    rate, latencies, errors = asyncio.run(load(server.url, body, clients, args.requests))
                    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
                    rows.append((name, label, clients, rate, p50, p95, p99, errors, direct))
                    print(f"{name:9} {label:8} {clients:3} clients: {rate:7.1f} req/s  p50 {p50:7.2f}  p95 {p95:7.2f}  "
                          f"p99 {p99:7.2f} ms  errors {errors}", flush=True)  # fmt: skip
                server.stop()
    print("\n| model | server | clients | req/s | p50 ms | p95 ms | p99 ms | errors | vs batch-1 | vs fastapi |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rate_of = {(r[0], r[1], r[2]): r[3] for r in rows}
    for name, label, clients, rate, p50, p95, p99, errors, _ in rows:
        against = [rate / rate_of[(name, other, clients)] for other in ("batch-1", "fastapi")]
        print(f"| {name} | {label} | {clients} | {rate:.1f} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {errors} | "
              f"{against[0]:.2f}x | {against[1]:.2f}x |")  # fmt: skip
    for name in {r[0] for r in rows}:
        one = next(r for r in rows if r[0] == name and r[1] == "batched" and r[2] == 1)
        print(f"{name}: one client, batched p50 {one[4]:.2f} ms vs the model called directly {one[8]:.2f} ms "
              f"(+{one[4] - one[8]:.2f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
