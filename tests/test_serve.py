"""cnntrain-serve for real: the server as a subprocess on a free loopback port, a real HTTP client (httpx), LitServe's
batching, the real decoder, ONNX Runtime; every answer compared with `cnntrain-predict --json` for the same image.

Two servers are started per module (each start loads the model twice: in the command, to refuse a bad file before
the port opens, and in its worker): a single-label run's checkpoint with CNNTRAIN_SERVE_TOKEN set, and a multi-label
run's ONNX export without a token and with a small --queue, which the last test stops with SIGTERM under load.
Options and model files that are wrong need no server and run in-process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntrain.commands import export, predict, serve, train

from helpers import REPO, assert_one_line_error, run_main
from synthetic_labelsets import write_sets

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("litserve") is None or importlib.util.find_spec("httpx") is None,
    reason="the serve extra (litserve) or httpx (dev) is not installed",
)
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed",
)
TOKEN = "s3cret-token"
QUEUE = 20  # the multi-label server's --queue: the load tests stay under it, the full-queue test fills it
START_TIMEOUT_S = 180  # two model loads on a busy 2-core machine
MULTILABEL = (
    "dataset=labels",
    "model=cnn2",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.progress=false",
    "report.plots=false",
    "device=cpu",
    "dataset.task=multilabel",
    "trainer.early_stopping.enabled=false",
)


class Server:
    """A running cnntrain-serve: its process, its address, and what it wrote so far."""

    def __init__(self, target: Path, *args: str, token: str | None = None, command: list[str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("CNNTRAIN_DEBUG", "CNNTRAIN_SERVE_TOKEN")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        if token:
            env["CNNTRAIN_SERVE_TOKEN"] = token
        command = command or [sys.executable, "-m", "cnntrain.commands.serve", str(target), "--port", "0", *args]
        self.printed = ""  # what it printed after the announced line, once stopped
        self.log = tempfile.TemporaryFile(mode="a+")  # the server's log: a pipe nobody reads could fill and block it
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        line = self._announced()
        self.url = line.split(" on ", 1)[1].split()[0]

    def _announced(self) -> str:
        """The line the server prints once its workers are warm (the port is chosen by the OS: --port 0)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith("serving "):
                    return line
            if self.process.poll() is not None:
                break
        raise AssertionError(f"the server did not start: {self.stop()[1]}")

    def stop(self, signal_it: bool = True) -> tuple[int, str]:
        if signal_it and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.printed = self.process.communicate(timeout=60)[0] or ""
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=10)
        return self.process.returncode, self.logged()

    def logged(self) -> str:
        """What the server wrote to its log so far (it appends: reading here never moves where it writes)."""
        self.log.seek(0)
        return self.log.read()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG that announces width x height pixels (its IHDR chunk and a valid CRC), and no pixels."""
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    head = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    return head + (100).to_bytes(4, "big") + b"IDAT"  # where the pixels would start: Pillow stops reading here


def images(folder: Path, count: int, channels: int) -> list[Path]:
    """PNGs of several sizes (every one resized by the server as the run resizes)."""
    rng = np.random.default_rng(3)
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(10, 60)), int(rng.integers(10, 60))
        shape = (h, w) if channels == 1 else (h, w, 3)
        paths.append(folder / f"img{i}.png")
        paths[-1].write_bytes(png(rng.integers(0, 256, shape, dtype=np.uint8)))
    return paths


def predicted(source: Path, paths: list[Path], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """cnntrain-predict --json's records, without the "image" key (a server is sent bytes, not paths)."""
    result = run_main(predict.main, [str(source), *map(str, paths), "--json"], tmp, monkeypatch)
    assert result.returncode == 0, result.stderr
    return [{k: v for k, v in record.items() if k != "image"} for record in json.loads(result.stdout)]


def same(answer: dict, expected: dict) -> bool:
    """The same classes (labels, predicted flags) in the same order, probabilities equal to float32 rounding: a
    batch of 16 may round the last bit differently from a batch of 1 (oneDNN picks kernels by batch size)."""
    if answer.keys() != expected.keys():
        return False
    for key in answer:
        ours, theirs = answer[key], expected[key]
        if len(ours) != len(theirs):
            return False
        for a, b in zip(ours, theirs):
            if {k: v for k, v in a.items() if k != "probability"} != {k: v for k, v in b.items() if k != "probability"}:
                return False
            if abs(a["probability"] - b["probability"]) > 1e-5:
                return False
    return True


async def load(server: Server, bodies: list[bytes], expected: list[dict], requests: int, clients: int) -> list:
    """`requests` POSTs from `clients` concurrent clients, image i % len(bodies) each; the mismatches."""
    import httpx

    wrong: list = []
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for n in counter:
            i = n % len(bodies)
            headers = {**server.headers, "Content-Type": "image/png"}
            try:
                response = await http.post(f"{server.url}/predict", content=bodies[i], headers=headers)
            except httpx.TransportError as err:  # a reset or a closed connection: said with the server's log
                wrong.append((i, repr(err), server.logged()[-2000:]))
                continue
            if response.status_code != 200 or not same(response.json(), expected[i]):
                wrong.append((i, response.status_code, response.text[:300]))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.wait_for(asyncio.gather(*(client(http) for _ in range(clients))), timeout=300)
    return wrong


@pytest.fixture(scope="module")
def single(one_epoch_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """The single-label run's checkpoint, served with a token."""
    options = ("--max-batch-size", "16", "--batch-timeout-ms", "5", "--max-body-mb", "1", "--max-images", "4",
               "--body-timeout-s", "2")  # fmt: skip
    server = Server(one_epoch_run, *options, token=TOKEN)
    yield server, one_epoch_run
    server.stop()


@pytest.fixture(scope="module")
def single_answers(single, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[dict]]:
    folder = tmp_path_factory.mktemp("single_images")
    paths = images(folder, 12, channels=1)
    with pytest.MonkeyPatch.context() as mp:
        expected = predicted(single[1], paths, folder, mp)
    return [p.read_bytes() for p in paths], expected


@pytest.fixture(scope="module")
def label_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label run exported to ONNX."""
    folder = tmp_path_factory.mktemp("labels")
    file = write_sets(folder / "data", "delimited", count=64)
    run_dir = folder / "run"
    out = folder / "export" / "model.onnx"
    with pytest.MonkeyPatch.context() as mp:
        result = run_main(train.main, [*MULTILABEL, f"dataset.file={file}", f"hydra.run.dir='{run_dir}'"], folder, mp)
        assert result.returncode == 0, result.stderr
        result = run_main(export.main, [str(run_dir), "--format", "onnx", "--output", str(out)], folder, mp)
        assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def labels(label_onnx: Path) -> Iterator[Server]:
    server = Server(label_onnx, "--max-batch-size", "8", "--queue", str(QUEUE))  # --batch-timeout-ms 0
    yield server
    server.stop()


def scraped(server: Server) -> dict[str, float]:
    """GET /metrics as {name{labels}: value}."""
    lines = get(server, "/metrics").text.splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def get(server: Server, path: str, **headers: str):
    import httpx

    return httpx.get(f"{server.url}{path}", headers={**server.headers, **headers}, timeout=30)


def post(server: Server, content: bytes = b"", **kwargs):
    import httpx

    headers = {**server.headers, **kwargs.pop("headers", {})}
    return httpx.post(f"{server.url}/predict", content=content or None, headers=headers, timeout=30, **kwargs)


# ---- answers under load: what cnntrain-predict --json says for the same image ----


@pytest.mark.slow
def test_2000_requests_from_32_clients_all_equal_predict(single, single_answers):
    bodies, expected = single_answers
    assert asyncio.run(load(single[0], bodies, expected, requests=2000, clients=32)) == []
    metrics = scraped(single[0])
    assert metrics['cnntrain_serve_errors_total{kind="internal"}'] == 0


def test_200_requests_from_16_clients_and_the_batch_form(single, single_answers):
    server, _ = single
    bodies, expected = single_answers
    assert asyncio.run(load(server, bodies, expected, requests=200, clients=16)) == []
    files = [("images", (f"x{i}.png", body, "image/png")) for i, body in enumerate(bodies[:4])]
    response = post(server, files=files)
    assert response.status_code == 200 and len(response.json()) == 4
    assert all(same(a, e) for a, e in zip(response.json(), expected[:4]))
    one = post(server, files=[("image", ("y.png", bodies[6], "image/png"))])
    assert one.status_code == 200 and same(one.json(), expected[6])
    metrics = scraped(server)
    assert metrics['cnntrain_serve_batch_size_bucket{le="1"}'] < metrics["cnntrain_serve_batch_size_count"]
    assert metrics["cnntrain_serve_images_total"] >= 205 and metrics['cnntrain_serve_requests_total{code="200"}'] >= 202


@needs_onnx
def test_a_multi_label_onnx_file_answers_as_predict(labels, label_onnx, tmp_path, monkeypatch):
    paths = images(tmp_path / "imgs", 8, channels=3)
    expected = predicted(label_onnx, paths, tmp_path, monkeypatch)
    assert "labels" in expected[0]
    bodies = [p.read_bytes() for p in paths]
    assert asyncio.run(load(labels, bodies, expected, requests=200, clients=16)) == []
    meta = get(labels, "/metadata").json()
    assert meta["format"] == "onnx" and meta["task"] == "multilabel" and len(meta["thresholds"]) == len(meta["classes"])


# ---- endpoints, token ----


def test_health_metadata_metrics_and_the_token(single):
    server, run_dir = single
    assert get(server, "/health").status_code == 200
    meta = get(server, "/metadata").json()
    assert meta["format"] == "eager" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["input"] == {"channels": 1, "height": 28, "width": 28} and meta["preprocessing"]["resize"] == "stretch"
    assert meta["commit"] == json.loads((run_dir / "summary.json").read_text())["git"]["commit"]
    assert "cnntrain_serve_request_seconds_bucket" in get(server, "/metrics").text
    import httpx

    for path in ("/health", "/metadata", "/metrics"):
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 401
    bare = httpx.post(f"{server.url}/predict", content=png(np.zeros((28, 28), np.uint8)), timeout=30)
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    wrong = post(server, png(np.zeros((28, 28), np.uint8)), headers={"Authorization": "Bearer s3cret-tokeX",
                                                                     "Content-Type": "image/png"})  # fmt: skip
    assert wrong.status_code == 401
    assert post(server, png(np.zeros((28, 28), np.uint8)), headers={"Content-Type": "image/png"}).status_code == 200


def test_no_token_needed_when_none_is_set(labels):
    import httpx

    assert httpx.get(f"{labels.url}/health", timeout=30).status_code == 200


def test_an_idle_connection_outlives_the_clients_own_expiry(labels):
    """httpx drops an idle connection after 5 s, uvicorn's default closes it after 5 s: a request sent on it at that
    moment met a reset under load. The server keeps it 75 s, so a connection idle for 6 s still answers."""
    host, port = labels.url.removeprefix("http://").split(":")
    body = png(np.zeros((8, 8, 3), np.uint8))
    request = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n"
               f"\r\n").encode() + body  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for pause in (0, 6):
            time.sleep(pause)
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 "), pause


# ---- bad requests: one line of JSON, the right status, and the server still answers ----


def slow_body(server: Server, seconds: float) -> bytes:
    """A body announced as 1000 bytes that trickles a byte at a time: the server gives up first."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/png\r\n"
            f"Content-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
            ready, _, _ = select.select([sock], [], [], 0)
            if ready:
                break
        return sock.recv(4096)


def test_bad_requests_are_refused_in_one_line_and_the_server_goes_on(single, single_answers):
    server, _ = single
    bodies, expected = single_answers
    good = bodies[0]
    truncated = good[: len(good) // 2]
    huge = png_header(9000, 9000)  # a header is all the server reads of it
    cases = [
        (dict(content=b"not an image at all", headers={"Content-Type": "image/png"}), 400, "not an image"),
        (dict(content=truncated, headers={"Content-Type": "image/png"}), 400, "truncated"),
        (dict(content=huge, headers={"Content-Type": "image/png"}), 413, "81,000,000 pixels"),
        (dict(content=b"x" * (2 << 20), headers={"Content-Type": "image/png"}), 413, "at most 1,048,576"),
        (dict(content=good, headers={"Content-Type": "application/json"}), 415, "application/json"),
        (dict(content=b"", headers={"Content-Type": "image/png"}), 422, "empty"),
        (dict(files=[("picture", ("a.png", good, "image/png"))]), 422, "neither 'image'"),
        (dict(files=[("images", ("a.png", good, "image/png"))] * 5), 413, "at most 4"),
        (dict(data={"image": "text"}, files=[("other", ("a", b"1"))]), 422, "file upload"),
    ]
    before = server.logged().count(" POST /predict from ")
    for kwargs, code, fragment in cases:
        response = post(server, **kwargs)
        assert response.status_code == code, (fragment, response.text)
        body = response.json()
        assert list(body) == ["error"] and fragment in body["error"], body
        assert "\n" not in response.text and "Traceback" not in response.text and "/tmp" not in response.text
    assert server.logged().count(" POST /predict from ") == before + len(cases)  # one log line each
    import httpx

    assert httpx.get(f"{server.url}/predict", headers=server.headers, timeout=30).status_code == 405
    assert httpx.get(f"{server.url}/docs", headers=server.headers, timeout=30).status_code == 404
    assert b" 408 " in slow_body(server, 6).split(b"\r\n")[0]
    response = post(server, good, headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and same(response.json(), expected[0])
    metrics = scraped(server)
    for kind in ("bad_image", "too_large", "unsupported_type", "missing_field", "slow_client", "not_found"):
        assert metrics[f'cnntrain_serve_errors_total{{kind="{kind}"}}'] >= 1, kind


@needs_onnx
def test_a_full_queue_is_503_with_retry_after(labels):
    """QUEUE clients hold their places with bodies that never come: the next request is turned away at once."""
    host, port = labels.url.removeprefix("http://").split(":")
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
    holders = [socket.create_connection((host, int(port)), timeout=30) for _ in range(QUEUE)]
    try:
        for holder in holders:
            holder.sendall(head)
        deadline = time.monotonic() + 20
        while scraped(labels)["cnntrain_serve_in_flight"] < QUEUE and time.monotonic() < deadline:
            time.sleep(0.1)
        response = post(labels, png(np.zeros((8, 8, 3), np.uint8)), headers={"Content-Type": "image/png"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "queue" in response.json()["error"]
    finally:
        for holder in holders:
            holder.close()
    deadline = time.monotonic() + 20
    while scraped(labels)["cnntrain_serve_in_flight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert post(labels, png(np.zeros((8, 8, 3), np.uint8)), headers={"Content-Type": "image/png"}).status_code == 200


# ---- stopping ----


@needs_onnx
def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(labels, label_onnx, tmp_path, monkeypatch):
    import httpx

    body = images(tmp_path / "imgs", 1, channels=3)[0].read_bytes()
    answers: list = []

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                response = await http.post(f"{labels.url}/predict", content=body, headers={"Content-Type": "image/png"})
            except httpx.TransportError:  # refused: the server has stopped accepting
                return
            answers.append(response.status_code)

    async def main() -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=8)) as http:
            tasks = [asyncio.create_task(client(http)) for _ in range(8)]
            while len(answers) < 40:
                await asyncio.sleep(0.05)
            labels.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        return await asyncio.to_thread(labels.stop, False)

    code, err = asyncio.run(main())
    assert code == 0, err
    assert len(answers) >= 40 and set(answers) == {200}, answers
    assert "Traceback" not in err


# ---- a wrong option or model file: one line, exit 2, before any port is opened ----


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--workers", "0"], "--workers=0"),
        (["--max-batch-size", "0"], "--max-batch-size=0"),
        (["--batch-timeout-ms", "-1"], "--batch-timeout-ms=-1"),
        (["--batch-timeout-ms", "nan"], "--batch-timeout-ms=nan"),
        (["--port", "70000"], "--port=70000"),
        (["--top-k", "0"], "--top-k=0"),
        (["--queue", "0"], "--queue=0"),
        (["--max-body-mb", "0"], "--max-body-mb=0"),
        (["--max-images", "0"], "--max-images=0"),
        (["--body-timeout-s", "0"], "--body-timeout-s=0"),
        (["--keep-alive-s", "0"], "--keep-alive-s=0"),
        (["--keep-alive-s", "inf"], "--keep-alive-s=inf"),
        (["--format", "tflite"], "tflite"),
        (["--host", " "], "--host"),
    ],
)
def test_bad_options_are_one_line(one_epoch_run, tmp_path, monkeypatch, argv, fragment):
    assert_one_line_error(run_main(serve.main, [str(one_epoch_run), *argv], tmp_path, monkeypatch), fragment)


@needs_onnx
def test_a_bad_model_file_is_one_line_before_the_port_opens(one_epoch_run, label_onnx, tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    copy = tmp_path / "model.onnx"
    copy.write_bytes(label_onnx.read_bytes())
    cases = [
        (tmp_path / "missing.onnx", "not found"),
        (copy, "contract model.onnx.json is missing"),
        (tmp_path / "notes.txt", "not a run directory nor an exported model file"),
        (one_epoch_run, "no export/model.onnx"),
    ]
    (tmp_path / "notes.txt").write_text("x")
    for target, fragment in cases:
        argv = [str(target), "--port", port] + (["--format", "onnx"] if target == one_epoch_run else [])
        assert_one_line_error(run_main(serve.main, argv, tmp_path, monkeypatch), fragment)
    contract = json.loads((label_onnx.parent / "model.onnx.json").read_text())
    (tmp_path / "model.onnx.json").write_text(json.dumps({**contract, "file": "other.onnx"}))
    assert_one_line_error(run_main(serve.main, [str(copy), "--port", port], tmp_path, monkeypatch), "other.onnx")
    for extra, fragment in ((["--checkpoint", "last"], "drop --checkpoint"), (["--format", "openvino"], "onnx file")):
        argv = [str(label_onnx), "--port", port, *extra]
        assert_one_line_error(run_main(serve.main, argv, tmp_path, monkeypatch), fragment)
    copy.write_bytes(b"not onnx")
    (tmp_path / "model.onnx.json").write_text(json.dumps(contract))
    assert_one_line_error(run_main(serve.main, [str(copy), "--port", port], tmp_path, monkeypatch), "cannot read it")
    with socket.create_server(("127.0.0.1", int(port))):
        pass  # the port is free again: nothing was left listening


def test_run_serve_from_python_answers_as_predict_and_gives_back_the_signal_handlers(
    one_epoch_run, tmp_path, monkeypatch
):
    """Run(RUN_DIR).serve() in a Python session: the same server and answers as the command; SIGTERM stops it, serve()
    returns, and the session's own SIGTERM handler is back."""
    paths = images(tmp_path / "imgs", 3, channels=1)
    expected = predicted(one_epoch_run, paths, tmp_path, monkeypatch)
    code = (
        "import signal\nfrom cnntrain import Run\nbefore = signal.getsignal(signal.SIGTERM)\n"
        f"Run({str(one_epoch_run)!r}).serve(port=0, max_batch_size=4, top_k=3)\n"
        "print('returned; handler back:', signal.getsignal(signal.SIGTERM) is before)\n"
    )
    server = Server(one_epoch_run, command=[sys.executable, "-c", code])
    try:
        assert get(server, "/health").status_code == 200
        for path, answer in zip(paths, expected):
            response = post(server, path.read_bytes(), headers={"Content-Type": "image/png"})
            assert response.status_code == 200 and same(response.json(), answer), response.text
    finally:
        code, log = server.stop()
    assert code == 0 and "Traceback" not in log, log
    assert "returned; handler back: True" in server.printed


def test_run_serve_checks_its_options_first(one_epoch_run):
    from cnntrain import Run
    from cnntrain.errors import ConfigError

    run = Run(one_epoch_run)
    with pytest.raises(ConfigError, match="max_batch_size=0"):
        run.serve(max_batch_size=0)
    with pytest.raises(ConfigError, match="serve\\(\\) got bogus"):
        run.serve(bogus=1)
    with pytest.raises(ConfigError, match="format='tflite'"):
        run.serve(format="tflite")
