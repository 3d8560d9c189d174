"""Our app logic as a raw ASGI app, for the HTTP-layer comparison in the benchmark (uvicorn, granian).

Everything that is ours and not HTTP is the same code the container runs: InferenceApp.prepare (routing and
validation), cross-request batching (the valid /invocations requests one pass of the event loop has read share
one InferenceApp.complete call, which runs a lone row as a pair), the request log (RequestLog, sampled as
configured) and EMF metrics (MetricsAggregator). Only the transport is the server's.

    uvicorn model_container.bench.asgi_app:app --http httptools --loop uvloop --workers 2
    granian --interface asgi --loop uvloop --workers 2 model_container.bench.asgi_app:app

The model is loaded from SM_MODEL_DIR when a worker imports the module.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from model_container.server.app import InferenceApp, Response
from model_container.server.logs import LogWriter, RequestLog
from model_container.server.metrics import MetricsAggregator
from model_container.server.model import LoadedModel

LOG_FLUSH_S = 0.5
METRICS_S = 5.0


class Batcher:
    """Per-loop collector: requests validated in one pass of the loop share one model call."""

    def __init__(self, app: InferenceApp) -> None:
        self.app = app
        self.pending: list[tuple[np.ndarray, str, asyncio.Future[Response]]] = []
        self.scheduled = False

    def submit(self, rows: np.ndarray, request_id: str) -> asyncio.Future[Response]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        self.pending.append((rows, request_id, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.run)
        return future

    def run(self) -> None:
        pending, self.pending = self.pending, []
        self.scheduled = False
        responses = self.app.complete([p[0] for p in pending], [p[1] for p in pending])
        for (_, _, future), response in zip(pending, responses, strict=True):
            future.set_result(response)


class AsgiModelApp:
    """ASGI 3 callable around InferenceApp."""

    def __init__(self, model_dir: Path, log_sample: float) -> None:
        self.logs = LogWriter()
        self.app = InferenceApp(self.logs)
        model = LoadedModel.load(model_dir)
        self.app.model = model
        self.metrics = MetricsAggregator(model.name, os.getpid())
        self.metrics.model_version = model.version
        self.request_log = RequestLog(self.logs, log_sample)
        self.batcher = Batcher(self.app)
        self.prefix = os.urandom(4).hex()
        self.count = 0
        self.ticking = False
        self.next_metrics = 0.0

    def _tick(self) -> None:
        self.logs.flush()
        if time.monotonic() >= self.next_metrics:
            self.next_metrics = time.monotonic() + METRICS_S
            for record in self.metrics.flush():
                self.logs.write_now(record)
        asyncio.get_running_loop().call_later(LOG_FLUSH_S, self._tick)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not self.ticking:
            self.ticking = True
            self.next_metrics = time.monotonic() + METRICS_S
            asyncio.get_running_loop().call_later(LOG_FLUSH_S, self._tick)
        started = time.perf_counter()
        self.count += 1
        request_id = f"{self.prefix}-{self.count}"
        content_type = accept = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        method, path = scope["method"].encode(), scope["path"].encode()
        outcome = self.app.prepare(method, path, content_type, accept, body, request_id)
        response = outcome if isinstance(outcome, Response) else await self.batcher.submit(outcome, request_id)
        headers = [(b"content-length", str(len(response.body)).encode()), (b"x-request-id", request_id.encode())]
        if response.content_type:
            headers.append((b"content-type", response.content_type))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        latency_ms = (time.perf_counter() - started) * 1000
        if path == b"/ping" and response.status == 200:
            return
        self.metrics.observe(response.status, latency_ms, response.rows, response.tally)
        self.request_log.request(
            request_id,
            0,
            method,
            path,
            response.status,
            response.rows,
            latency_ms,
            self.metrics.model_version,
            response.error_code,
        )


def _create() -> AsgiModelApp | None:
    model_dir = os.environ.get("SM_MODEL_DIR")
    if not model_dir:
        return None
    return AsgiModelApp(Path(model_dir), float(os.environ.get("MODEL_SERVER_REQUEST_LOG_SAMPLE", "1")))


app = _create()
