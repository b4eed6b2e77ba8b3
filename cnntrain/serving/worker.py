"""The LitServe API of cnntrain-serve: what each inference worker process does with the requests LitServe batches.

LitServe (litserve.LitAPI) runs `setup` once per worker, then collects requests into batches of up to
max_batch_size within batch_timeout and calls `batch`, `predict`, `unbatch` and `encode_response`. Every request
that reaches a worker has already been read, checked and decoded by the HTTP side (cnntrain.serving.gate), so a
bad image never shares a batch with good ones; here the decoded uint8 images of all requests in a batch run
through the model as one array and the answers are split back per request.

(No `from __future__ import annotations` here: LitServe gives decode_request's annotation to FastAPI, which needs
the real type, a dict, to read the request body as JSON.)
"""

import base64
import os
import signal
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

import litserve
import numpy as np
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop

from cnntrain.serving.metrics import Metrics
from cnntrain.serving.model import LoadedModel, ModelSource


def model_threads(workers: int) -> int:
    """Torch threads per worker: the cores shared among the workers and the HTTP process (which decodes). Torch's
    default, every core in every worker, oversubscribes them: on 2 busy cores one image's p95 went from 30 ms with
    1 thread to 240 ms with 2 (its OpenMP threads wait for each other)."""
    return max(1, (os.cpu_count() or 1) // (workers + 1))


class WaitingBatchedLoop(BatchedLoop):
    """LitServe's batched loop with another way to gather a batch: wait (blocking, no polling) for the first request,
    take every request already queued behind it, then wait up to batch_timeout for more, up to max_batch_size.

    LitServe's own gathering polls its queue every millisecond for the whole batch_timeout, also when the server is
    idle (a core kept busy for nothing), and with batch_timeout 0 it spins; here an idle worker sleeps in the queue,
    a lone request runs at once when batch_timeout is 0, and under load the requests that queued while the model
    ran form the next batch."""

    def get_batch_requests(self, lit_api: Any, request_queue: Any, transport: Any) -> tuple[list, list]:
        try:
            first = request_queue.get(timeout=1.0)
        except Empty:
            return [], []
        items = [first]
        deadline = time.monotonic() + lit_api.batch_timeout
        while len(items) < lit_api.max_batch_size and items[-1] != _SENTINEL_VALUE:
            try:
                left = deadline - time.monotonic()
                items.append(request_queue.get(timeout=left) if left > 0 else request_queue.get_nowait())
            except Empty:
                break
        payloads, timed_out = [], []
        for item in items:
            if item == _SENTINEL_VALUE:
                raise _StopLoopError()
            response_queue_id, uid, timestamp, x_enc = item
            if lit_api.request_timeout not in (-1, False) and time.monotonic() - timestamp > lit_api.request_timeout:
                timed_out.append((response_queue_id, uid))
            else:
                payloads.append((response_queue_id, uid, x_enc))
        return payloads, timed_out


class ServedAPI(litserve.LitAPI):
    """One served model: setup opens it and answers a warm-up batch; predict answers a batch of requests."""

    def __init__(
        self,
        source: ModelSource,
        top_k: int,
        metrics: Metrics,
        max_batch_size: int,
        batch_timeout: float,
        workers: int = 1,
    ) -> None:
        loop = WaitingBatchedLoop() if max_batch_size > 1 else "auto"  # 1: LitServe's unbatched loop
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict", loop=loop)
        self.source = source
        self.top_k = top_k
        self.metrics = metrics
        self.model: LoadedModel | None = None
        self.threads = model_threads(workers)
        self.ready: Callable[[], bool] | None = None  # the command's: are the workers up (never sent to them)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ready": None}

    def health(self) -> bool:
        """LitServe's GET /health, in the command's process: 200 once every worker is set up, and while they live."""
        return self.ready is not None and self.ready()

    def setup(self, device: str) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the command stops us in order
        self.model = LoadedModel(self.source, threads=self.threads)
        for size in sorted({1, self.max_batch_size}):  # warm-up: allocations for one image and for a full batch
            self.model.answer(np.zeros((size, *self.model.input_shape), dtype=np.uint8), self.top_k)

    def decode_request(self, request: dict[str, Any]) -> tuple[np.ndarray, bool]:
        images = np.frombuffer(bytearray(base64.b64decode(request["data"])), dtype=np.uint8).reshape(request["shape"])
        return images, bool(request["many"])

    def batch(self, inputs: list[tuple[np.ndarray, bool]]) -> list[tuple[np.ndarray, bool]]:
        return inputs  # predict joins the images of every request itself (requests hold different numbers)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def predict(self, x: Any) -> Any:
        requests = x if isinstance(x, list) else [x]
        images = np.concatenate([images for images, _ in requests]) if len(requests) > 1 else requests[0][0]
        assert self.model is not None
        records = self.model.answer(images, self.top_k)
        self.metrics.batch(len(requests), len(images))
        answers, start = [], 0
        for part, many in requests:
            mine = records[start : start + len(part)]
            start += len(part)
            answers.append(mine if many else mine[0])
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: Any) -> Any:
        return output
