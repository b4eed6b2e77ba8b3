"""The HTTP side of cnntrain-serve in front of LitServe: who may call, which paths exist, and every request read,
bounded and decoded before LitServe queues it, so no bad or oversized request reaches a model worker.

An ASGI middleware (LitServe takes Starlette middlewares) does in order, for every request:
  token      with CNNTRAIN_SERVE_TOKEN set, `Authorization: Bearer <token>` compared with hmac.compare_digest -> 401
  paths      GET /health (LitServe's), GET /metadata, GET /metrics (answered here), POST /predict; else 404/405
and for POST /predict:
  queue      more than `queue` requests in the server at once -> 503 with Retry-After (memory stays bounded)
  type       a raw image body (image/*, application/octet-stream) or multipart/form-data -> else 415
  size       Content-Length over the byte limit -> 413 before a byte is read; a body that grows past it -> 413
  slow       a body that has not arrived within `body_timeout` seconds -> 408, and the connection is closed
  fields     multipart: `image` (one file) or `images` (up to `max_images` files) -> 422 when missing
  decode     each image through cnntrain.data.images (the run's decoder, EXIF, resize, the training pixel budget
             read from the header first) in a thread -> 413 over the budget, 400 when it is not a decodable image
Then the decoded uint8 images go on as the JSON body of LitServe's own POST /predict handler, which queues and
batches them. Every refusal is one line of JSON, {"error": "..."}, naming the value and what is allowed (nothing
about the server's insides), and one line in the server's log; LitServe's own error answers are reworded the same
way. Nothing in a request is ever used as a path.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnntrain.data.images import ImageTooLarge, NamedBytes, decode_array
from cnntrain.errors import UserError
from cnntrain.serving.metrics import Metrics

LOG = logging.getLogger("cnntrain.serve")
ROUTES = {"/predict": "POST", "/health": "GET", "/metadata": "GET", "/metrics": "GET"}
RAW_TYPES = ("application/octet-stream",)  # and every image/* type
MULTIPART = "multipart/form-data"
FIELDS = ("image", "images")
RETRY_AFTER_S = 1
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one request may cost: body bytes, images, seconds to arrive; requests in the server at once."""

    max_body_bytes: int
    max_images: int
    body_timeout: float
    queue: int
    request_timeout: float  # LitServe's: the longest a request waits in the worker queue (504 past it)


class Refusal(Exception):
    """A request answered with `code` and one line, before it reaches the model."""

    def __init__(
        self, code: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = (), detail: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers
        self.detail = detail  # for the server's log only (the decoder's own words)


class Gate:
    """The middleware (LitServe builds it with the keyword arguments below)."""

    def __init__(
        self,
        app: Any,
        *,
        input_shape: tuple[int, int, int],
        resize: str,
        metadata: dict[str, Any],
        token: str | None,
        limits: Limits,
        metrics: Metrics,
        ready: Callable[[], bool],
    ) -> None:
        self.app = app
        self.input_shape = input_shape
        self.resize = resize
        self.metadata = json.dumps(metadata).encode()
        self.token = None if token is None else f"Bearer {token}".encode()
        self.limits = limits
        self.metrics = metrics
        self.ready = ready
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan: LitServe's start and stop
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        try:
            self._check_token(scope)
            if ROUTES.get(path) is None:
                raise Refusal(404, f"no such path {path[:100]!r}; this server has {', '.join(ROUTES)}")
            if method != ROUTES[path]:
                raise Refusal(405, f"{path} takes {ROUTES[path]}, not {method[:10]}")
        except Refusal as refusal:
            self.metrics.refused(refusal.code)
            await self._refuse(scope, send, refusal)
            return
        if path == "/metadata":
            await _reply(send, 200, self.metadata)
        elif path == "/metrics":
            text = self.metrics.text(self.in_flight, self.ready()).encode()
            await _reply(send, 200, text, b"text/plain; version=0.0.4; charset=utf-8")
        elif path == "/health":
            await self.app(scope, receive, send)
        else:
            await self._predict(scope, receive, send)

    def _check_token(self, scope: Scope) -> None:
        if self.token is None:
            return
        given = _header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self.token):
            raise Refusal(
                401,
                "this server needs 'Authorization: Bearer <token>' with its token",
                ((b"www-authenticate", b"Bearer"),),
            )

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        status = {"code": 500}
        if self.in_flight >= self.limits.queue:
            refusal = Refusal(
                503,
                f"the server holds {self.limits.queue} requests already (its queue bound); retry in {RETRY_AFTER_S} s",
                ((b"retry-after", str(RETRY_AFTER_S).encode()),),
            )
            self.metrics.request(503, time.monotonic() - started)
            await self._refuse(scope, send, refusal)
            return
        self.in_flight += 1
        try:
            images, many = await self._images(scope, receive)
            body = json.dumps(pack(images, many)).encode()
            await self.app(_as_json(scope, body), _replay(body, receive), _reworded(send, status, self.limits))
        except Refusal as refusal:
            status["code"] = refusal.code
            await self._refuse(scope, send, refusal)
        finally:
            self.in_flight -= 1
            self.metrics.request(status["code"], time.monotonic() - started)

    async def _images(self, scope: Scope, receive: Receive) -> tuple[np.ndarray, bool]:
        """The request's images, decoded as the run's were, and whether it used the batch form."""
        kind = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower().decode("latin-1")
        if not (kind.startswith("image/") or kind in RAW_TYPES or kind == MULTIPART):
            raise Refusal(
                415,
                f"content type {kind[:60]!r} is not taken; send one image as the raw body (image/png, image/jpeg, "
                f"... or application/octet-stream) or as multipart/form-data ('image', or several as 'images')"
                if kind
                else "the request has no Content-Type; send image/png, image/jpeg, ..., application/octet-stream "
                "or multipart/form-data",
            )
        body = await self._body(scope, receive)
        if kind == MULTIPART:
            blobs, many = await self._form(scope, body)
        elif not body:
            raise Refusal(422, "the body is empty; send one image as the body")
        else:
            blobs, many = [("upload", body)], False
        images = await asyncio.get_running_loop().run_in_executor(None, self._decode, blobs)
        return images, many

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body: refused unread when Content-Length is over the limit, and when it trickles too slowly."""
        limit = self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise Refusal(413, f"a body of {declared[:20].decode('latin-1')} bytes; at most {limit:,} are taken")
        deadline = time.monotonic() + self.limits.body_timeout
        parts, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise Refusal(
                    408, f"the body did not arrive within {self.limits.body_timeout:g} s", ((b"connection", b"close"),)
                ) from None
            if message["type"] == "http.disconnect":
                raise Refusal(400, "the client went away before its body arrived")
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > limit:
                raise Refusal(413, f"the body is over {limit:,} bytes, the most taken", ((b"connection", b"close"),))
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _form(self, scope: Scope, body: bytes) -> tuple[list[tuple[str, bytes]], bool]:
        from starlette.datastructures import Headers, UploadFile  # fastapi's, which litserve brings
        from starlette.formparsers import MultiPartException, MultiPartParser

        async def stream() -> AsyncIterator[bytes]:
            yield body

        most = self.limits.max_images
        try:
            form = await MultiPartParser(Headers(scope=scope), stream(), max_files=most, max_fields=8).parse()
        except MultiPartException as err:
            if "Too many files" in err.message:
                raise Refusal(413, f"more than {most} files in the form; at most {most} images are taken") from None
            raise Refusal(400, f"the form: {err.message}") from None
        try:
            named = [field for field in FIELDS if field in form]
            if len(named) != 1:
                raise Refusal(
                    422,
                    "the form has neither 'image' (one file) nor 'images' (several files)"
                    if not named
                    else "the form has both 'image' and 'images'; send one of them",
                )
            values = form.getlist(named[0])
            if not all(isinstance(value, UploadFile) for value in values):
                raise Refusal(422, f"the form's {named[0]!r} must be a file upload, not text")
            if named[0] == "image" and len(values) != 1:
                raise Refusal(422, f"the form has {len(values)} 'image' files; send several as 'images'")
            if len(values) > most:
                raise Refusal(413, f"{len(values)} images in one request; at most {most} are taken")
            names = ["image"] if named[0] == "image" else [f"images[{i}]" for i in range(len(values))]
            blobs = [(name, await value.read()) for name, value in zip(names, values)]
        finally:
            await form.close()
        return blobs, named[0] == "images"

    def _decode(self, blobs: list[tuple[str, bytes]]) -> np.ndarray:
        channels, height, width = self.input_shape
        images = []
        for name, blob in blobs:
            try:
                images.append(decode_array(NamedBytes(blob, name), channels, height, width, resize=self.resize))
            except ImageTooLarge as err:
                raise Refusal(413, str(err)) from None
            except UserError as err:
                raise Refusal(
                    400,
                    f"{name} is not an image that can be decoded (PNG, JPEG, WebP, BMP, TIFF, GIF), or is truncated",
                    detail=str(err),
                ) from None
        return np.stack(images)

    async def _refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        client = scope.get("client") or ("?", 0)
        said = f"{refusal.message} ({refusal.detail})" if refusal.detail else refusal.message
        LOG.warning("%s %s %s from %s: %s", refusal.code, scope["method"], scope["path"][:100], client[0], said)
        await _reply(send, refusal.code, json.dumps({"error": refusal.message}).encode(), headers=refusal.headers)


def pack(images: np.ndarray, many: bool) -> dict[str, Any]:
    """The decoded images as the JSON body LitServe's own request handler reads and queues (worker.py unpacks it)."""
    return {"many": many, "shape": list(images.shape), "data": base64.b64encode(images.tobytes()).decode("ascii")}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def _as_json(scope: Scope, body: bytes) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    """The decoded body once, then the client's own messages (a disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _reworded(send: Send, status: dict[str, int], limits: Limits) -> Send:
    """LitServe's answers as they are, its errors (504 queue timeout, 500) as one line of our JSON."""
    held: dict[str, Any] = {}

    async def reworded(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
            if message["status"] < 400:
                await send(message)
            else:
                held["start"] = message
            return
        if "start" not in held:
            await send(message)
            return
        if message.get("more_body", False):
            return
        code = held["start"]["status"]
        text = (
            f"the request waited over {limits.request_timeout:g} s for a model worker; retry later"
            if code == 504
            else "the server could not answer this request; its log says why"
        )
        LOG.error("%s from the model worker: %s", code, message.get("body", b"")[:200].decode("utf-8", "replace"))
        await _reply(send, code, json.dumps({"error": text}).encode())

    return reworded


async def _reply(
    send: Send,
    code: int,
    body: bytes,
    kind: bytes = b"application/json",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    head = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": code, "headers": head})
    await send({"type": "http.response.body", "body": body})
