"""What a monitoring system scrapes from GET /metrics, in Prometheus' text format (version 0.0.4).

The counters live in one shared array of doubles made before the inference workers start, so the HTTP side (requests,
errors by kind, latency) and the workers (batch sizes) add to the same numbers without a metrics server of their own.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

CODES = (200, 400, 401, 404, 405, 408, 413, 415, 422, 500, 503, 504)
ERROR_KINDS = (
    "bad_image",  # 400: not an image, truncated, undecodable, a malformed form
    "unauthorized",  # 401
    "not_found",  # 404/405: a path or method the server does not have
    "slow_client",  # 408: the body did not arrive within the time allowed
    "too_large",  # 413: over the byte limit, the pixel budget or the images per request
    "unsupported_type",  # 415
    "missing_field",  # 422
    "internal",  # 500
    "queue_full",  # 503
    "timeout",  # 504: waited in the queue longer than the request timeout
)
KIND_OF_CODE = {400: "bad_image", 401: "unauthorized", 404: "not_found", 405: "not_found", 408: "slow_client",
                413: "too_large", 415: "unsupported_type", 422: "missing_field", 500: "internal", 503: "queue_full",
                504: "timeout"}  # fmt: skip
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_REQUESTS = 0
_ERRORS = _REQUESTS + len(CODES)
_LATENCY = _ERRORS + len(ERROR_KINDS)  # buckets, then +Inf, sum, count
_BATCH = _LATENCY + len(LATENCY_BUCKETS) + 3
_IMAGES = _BATCH + len(BATCH_BUCKETS) + 3
_SIZE = _IMAGES + 1


class Metrics:
    """Counters shared by the HTTP side and the inference workers (a spawn-context array: it travels to them)."""

    def __init__(self) -> None:
        self.values: Any = multiprocessing.get_context("spawn").Array("d", _SIZE)

    def request(self, code: int, seconds: float) -> None:
        """One answered POST /predict: its status, its error kind (from the status), its latency."""
        with self.values.get_lock():
            values = self.values.get_obj()
            if code in CODES:
                values[_REQUESTS + CODES.index(code)] += 1
            kind = KIND_OF_CODE.get(code)
            if kind is not None:
                values[_ERRORS + ERROR_KINDS.index(kind)] += 1
            _observe(values, _LATENCY, LATENCY_BUCKETS, seconds)

    def refused(self, code: int) -> None:
        """A request refused before it was a prediction (another path, a missing token): its error kind only."""
        kind = KIND_OF_CODE.get(code)
        if kind is not None:
            with self.values.get_lock():
                self.values.get_obj()[_ERRORS + ERROR_KINDS.index(kind)] += 1

    def batch(self, requests: int, images: int) -> None:
        """One batch an inference worker ran: how many requests it joined, how many images they held."""
        with self.values.get_lock():
            values = self.values.get_obj()
            _observe(values, _BATCH, BATCH_BUCKETS, requests)
            values[_IMAGES] += images

    def text(self, in_flight: int, ready: bool) -> str:
        """The Prometheus exposition of every counter."""
        with self.values.get_lock():
            values = list(self.values.get_obj())
        lines = [
            "# HELP cnntrain_serve_requests_total POST /predict requests answered, by HTTP status.",
            "# TYPE cnntrain_serve_requests_total counter",
            *(f'cnntrain_serve_requests_total{{code="{code}"}} {_n(values[_REQUESTS + i])}' for i, code in
              enumerate(CODES)),
            "# HELP cnntrain_serve_errors_total Requests refused or failed, by kind.",
            "# TYPE cnntrain_serve_errors_total counter",
            *(f'cnntrain_serve_errors_total{{kind="{kind}"}} {_n(values[_ERRORS + i])}' for i, kind in
              enumerate(ERROR_KINDS)),
            *_histogram("cnntrain_serve_request_seconds", "Time from a request's arrival to its answer.",
                        values, _LATENCY, LATENCY_BUCKETS),
            *_histogram("cnntrain_serve_batch_size", "Requests run together in one model call.",
                        values, _BATCH, BATCH_BUCKETS),
            "# HELP cnntrain_serve_images_total Images the model classified.",
            "# TYPE cnntrain_serve_images_total counter",
            f"cnntrain_serve_images_total {_n(values[_IMAGES])}",
            "# HELP cnntrain_serve_in_flight POST /predict requests being read, queued or run now.",
            "# TYPE cnntrain_serve_in_flight gauge",
            f"cnntrain_serve_in_flight {in_flight}",
            "# HELP cnntrain_serve_ready 1 once every inference worker has loaded the model and answered a warm-up.",
            "# TYPE cnntrain_serve_ready gauge",
            f"cnntrain_serve_ready {int(ready)}",
        ]  # fmt: skip
        return "\n".join(lines) + "\n"


def _observe(values: Any, start: int, buckets: tuple[float, ...], value: float) -> None:
    """Cumulative buckets (le), then +Inf, sum and count, as Prometheus histograms are exposed."""
    for i, bound in enumerate(buckets):
        if value <= bound:
            values[start + i] += 1
    values[start + len(buckets)] += 1
    values[start + len(buckets) + 1] += value
    values[start + len(buckets) + 2] += 1


def _histogram(name: str, doc: str, values: list[float], start: int, buckets: tuple[float, ...]) -> list[str]:
    lines = [f"# HELP {name} {doc}", f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{le="{bound:g}"}} {_n(values[start + i])}' for i, bound in enumerate(buckets)]
    lines.append(f'{name}_bucket{{le="+Inf"}} {_n(values[start + len(buckets)])}')
    lines.append(f"{name}_sum {values[start + len(buckets) + 1]:.6g}")
    lines.append(f"{name}_count {_n(values[start + len(buckets) + 2])}")
    return lines


def _n(value: float) -> str:
    return str(int(value))
