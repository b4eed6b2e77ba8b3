"""Start cnntrain-serve: the model checked, the port bound, LitServe's inference workers warmed up, then uvicorn
serving until SIGTERM (or Ctrl-C), and everything stopped in order.

LitServe's own `LitServer.run` runs uvicorn in forked processes and stops them by terminating them; here uvicorn
runs in this process's main thread instead (LitServe's request handler, queues, workers and batching unchanged),
so uvicorn's own graceful shutdown answers SIGTERM: it closes the listening socket, lets every request in flight
finish (up to GRACE_S), and only then are the workers and LitServe's queue manager stopped; the exit status is 0.
A model file that is missing, unreadable or does not match its JSON fails in LoadedModel, and a port in use at
the bind, both before anything listens.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnntrain.errors import ConfigError, UserError
from cnntrain.serving.gate import Gate, Limits
from cnntrain.serving.metrics import Metrics
from cnntrain.serving.model import LoadedModel, ModelSource

TOKEN_VARIABLE = "CNNTRAIN_SERVE_TOKEN"
GRACE_S = 30  # the longest SIGTERM waits for requests in flight
READY_TIMEOUT_S = 300  # the longest the workers may take to load the model and answer the warm-up
LOG = logging.getLogger("cnntrain.serve")


@dataclass(frozen=True)
class ServeOptions:
    """Everything cnntrain-serve and Run.serve() take besides the model (docs/serving.md has each one)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 16
    batch_timeout_ms: float = 0.0
    workers: int = 1
    top_k: int = 3
    queue: int = 256
    max_body_mb: float = 16.0
    max_images: int = 64
    body_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    keep_alive_s: float = 75.0  # longer than clients keep idle connections (httpx 5 s, aiohttp 15 s), as nginx's


def check_options(options: ServeOptions, flag: Callable[[str], str]) -> None:
    """A ConfigError naming the first value out of range (`flag` spells an option's name: --max-batch-size for the
    command, max_batch_size for Run.serve)."""
    whole = {"port": (0, 65535), "max_batch_size": (1, 4096), "workers": (1, 64), "top_k": (1, 100_000),
             "queue": (1, 1_000_000), "max_images": (1, 4096)}  # fmt: skip
    for name, (low, high) in whole.items():
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{flag(name)}={value!r}: must be a whole number from {low} to {high}")
    spans = {"batch_timeout_ms": (True, 10_000, "milliseconds"), "max_body_mb": (False, 1024, "MiB"),
             "body_timeout_s": (False, 3600, "seconds"), "request_timeout_s": (False, 3600, "seconds"),
             "keep_alive_s": (False, 3600, "seconds")}  # fmt: skip
    for name, (zero_ok, high, unit) in spans.items():
        value = getattr(options, name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (number and (value >= 0 if zero_ok else value > 0) and value <= high):
            allowed = f"from 0 to {high}" if zero_ok else f"more than 0 and at most {high}"
            raise ConfigError(f"{flag(name)}={value!r}: must be {allowed} {unit}")
    host = options.host
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ConfigError(f"{flag('host')}={host!r}: must be an address such as 127.0.0.1, 0.0.0.0 or ::")


def serve(source: ModelSource, options: ServeOptions, announce: Any = print) -> None:
    """Serve `source` until SIGTERM or SIGINT, then return (the command exits 0)."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        _serve(source, options, announce)
    finally:
        for signum, handler in handlers.items():  # Run.serve() leaves the Python session's own handlers
            signal.signal(signum, handler)


def _serve(source: ModelSource, options: ServeOptions, announce: Any) -> None:
    try:
        import litserve  # the serve extra (litserve: fastapi, uvicorn, pyzmq)
        import uvicorn
    except ImportError:
        raise UserError("serving needs LitServe: pip install 'cnntrain[serve]'") from None

    _stop_early()
    if not LOG.handlers:  # one line per refused request, on stderr
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
    model = LoadedModel(source)  # a bad file: one line, before the port is bound
    token = os.environ.get(TOKEN_VARIABLE) or None
    sock = _bind(options.host, options.port)
    metrics = Metrics()
    workers: list[Any] = []
    api = _api(source, options, metrics)
    limits = Limits(
        max_body_bytes=int(options.max_body_mb * (1 << 20)),
        max_images=options.max_images,
        body_timeout=options.body_timeout_s,
        queue=options.queue,
        request_timeout=options.request_timeout_s,
    )
    gate = {
        "input_shape": model.input_shape,
        "resize": model.resize,
        "metadata": model.metadata(options.top_k),
        "token": token,
        "limits": limits,
        "metrics": metrics,
        "ready": lambda: bool(workers) and all(worker.is_alive() for worker in workers),
    }
    api.ready = gate["ready"]
    server = litserve.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=options.workers,
        timeout=options.request_timeout_s,
        disable_openapi_url=True,
        middlewares=[(Gate, gate)],
    )
    manager = server._init_manager(1)  # LitServe's queues and worker status, as LitServer.run makes them
    server.inference_workers = workers
    try:
        workers.extend(server.launch_inference_worker(api))
        _wait_ready(server, workers)
        server.app.response_queue_id = 0
        config = uvicorn.Config(
            server.app,
            log_level="warning",
            timeout_graceful_shutdown=GRACE_S,
            timeout_keep_alive=options.keep_alive_s,  # a client's idle connection must expire on its side first
            limit_concurrency=options.queue + 64,  # connections beyond the queue bound and a margin: uvicorn's 503
        )
        stopping = _quiet_signals()
        sock.listen(config.backlog)  # connections wait in the backlog from here until uvicorn takes them
        announce(
            f"serving {source.path} ({source.fmt}) on http://{options.host}:{sock.getsockname()[1]} "
            f"(max batch {options.max_batch_size}, batch timeout {options.batch_timeout_ms:g} ms, "
            f"{options.workers} worker{'s' if options.workers > 1 else ''}, token {'on' if token else 'off'})"
        )
        uvicorn.Server(config).run(sockets=[sock])
        LOG.info("stopped after %s", stopping.get("signal", "the server ended"))
    finally:
        sock.close()
        server._perform_graceful_shutdown(manager, {}, "normal")  # workers and LitServe's manager, in order


def _api(source: ModelSource, options: ServeOptions, metrics: Metrics) -> Any:
    from cnntrain.serving.worker import ServedAPI

    return ServedAPI(
        source, options.top_k, metrics, options.max_batch_size, options.batch_timeout_ms / 1000, options.workers
    )


def _bind(host: str, port: int) -> socket.socket:
    """The listening address, bound before any worker starts (uvicorn listens on it once they are ready)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as err:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err})") from None
    sock.set_inheritable(True)
    return sock


def _wait_ready(server: Any, workers: list[Any]) -> None:
    """Until every worker has loaded the model and answered its warm-up; one line if one fails or dies."""
    from litserve.utils import WorkerSetupStatus

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        states = list(server.workers_setup_status.values())
        if WorkerSetupStatus.ERROR in states or not all(worker.is_alive() for worker in workers):
            raise UserError("an inference worker could not load the model; its error is in the log above")
        if len(states) == len(workers) and all(state == WorkerSetupStatus.READY for state in states):
            return
        time.sleep(0.05)
    raise UserError(f"the inference workers were not ready within {READY_TIMEOUT_S} s")


def _stop_early() -> None:
    """SIGTERM while the model loads or the workers warm up: stop there (the caller's finally stops the workers)."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, stop)


def _quiet_signals() -> dict[str, str]:
    """SIGTERM and SIGINT as uvicorn's graceful stop only: uvicorn raises the signal again once it has stopped, and
    these handlers make that a note instead of death by signal, so the command goes on to stop the workers."""
    seen: dict[str, str] = {}

    def note(signum: int, frame: Any) -> None:
        seen["signal"] = signal.Signals(signum).name

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, note)
    sys.stdout.flush()
    return seen
