"""HTTP/1.1 transport: an asyncio protocol over httptools' parser, keep-alive and pipelining aware."""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools
import numpy as np
import orjson

from model_container.server.app import JSON, InferenceApp, Response
from model_container.server.logs import LogWriter
from model_container.server.metrics import MetricsAggregator

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER_S = 2.0
MAX_HEAD_BYTES = 64 * 1024
# The same head as the general case in HttpConnection.send, in one formatting step.
KEEP_ALIVE_JSON = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nX-Request-Id: %s\r\nContent-Type: " + JSON + b"\r\n\r\n%s"


@dataclass
class ServerState:
    """What every connection of one worker shares."""

    app: InferenceApp
    logs: LogWriter
    metrics: MetricsAggregator
    max_body_bytes: int
    worker: int
    connections: set[HttpConnection] = field(default_factory=set)
    draining: bool = False
    request_prefix: str = field(default_factory=lambda: os.urandom(4).hex())
    request_count: int = 0
    on_idle: Callable[[], None] | None = None
    on_connections: Callable[[int], None] | None = None  # called with the open connection count when it changes
    pending_writes: list[tuple[asyncio.Transport, bytes]] = field(default_factory=list)
    pending_requests: list[Queued] = field(default_factory=list)
    flush_scheduled: bool = False

    def _schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def enqueue(self, request: Queued) -> None:
        """Hold a fully received request until the loop has read every request that is ready now:
        the valid /invocations requests among them then share one model call."""
        self.pending_requests.append(request)
        self._schedule_flush()

    def defer_write(self, transport: asyncio.Transport, data: bytes) -> None:
        """Queue a response until the loop has handled every request that is ready now.

        Sending them back to back wakes the clients once per batch instead of once per response,
        which matters on virtual machines where waking an idle CPU is expensive."""
        self.pending_writes.append((transport, data))
        self._schedule_flush()

    def flush(self) -> None:
        """Answer the held requests, in the order they arrived, then send the responses."""
        try:
            self.answer_requests()
            self.flush_writes()
        finally:
            self.flush_scheduled = False

    def answer_requests(self) -> None:
        requests, self.pending_requests = self.pending_requests, []
        if not requests:
            return
        invocations = [r for r in requests if type(r.outcome) is not Response]
        if invocations:
            responses = self.app.complete(
                [cast(np.ndarray, r.outcome) for r in invocations], [r.request_id for r in invocations]
            )
            for request, response in zip(invocations, responses, strict=True):
                request.outcome = response
        for request in requests:
            request.connection.respond(request, cast(Response, request.outcome))

    def flush_writes(self) -> None:
        writes, self.pending_writes = self.pending_writes, []
        for transport, data in writes:
            if not transport.is_closing():
                transport.write(data)

    def next_request_id(self) -> str:
        self.request_count += 1
        return f"{self.request_prefix}-{self.request_count}"


class HttpConnection(asyncio.Protocol):
    """One client connection; requests are validated as they arrive and answered in order, batched
    with the other requests the event loop has ready (ServerState.flush)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.started: float | None = None  # set while a request is being received
        self.queued = 0  # requests received and not yet answered
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.content_type = b""
        self.accept = b""
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.in_head = True

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        state = self.state
        state.connections.add(self)
        if state.on_connections:
            state.on_connections(len(state.connections))

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        self.closing = True
        if state.on_connections:
            state.on_connections(len(state.connections))
        if state.draining and state.on_idle:
            state.on_idle()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                limit_mb = self.state.max_body_bytes // (1024 * 1024)
                self.reject(413, "payload_too_large", f"body exceeds {limit_mb} MB")
            else:
                self.state.logs.write_now(
                    {
                        "level": "error",
                        "event": "connection_failed",
                        "traceback": "".join(traceback.format_exception(exc.__context__ or exc)),
                    }
                )
                self.reject(500, "internal_error", "internal error while handling the connection")
        except httptools.HttpParserUpgrade:
            self.reject(400, "bad_request", "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self.reject(400, "bad_request", f"malformed HTTP request: {exc}")
        if self.in_head and not self.closing:  # httptools buffers an unfinished head without limit
            self.head_size += len(data)
            if self.head_size > MAX_HEAD_BYTES:
                self.reject(431, "headers_too_large", f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    # --- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.started = time.perf_counter()
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value
        elif name == b"accept":
            self.accept = value
        elif name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0  # httptools itself rejects a malformed length
            if declared > self.state.max_body_bytes:
                # Refuse before reading: the body is never buffered.
                raise _TooLarge
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.expect_continue and self.transport:
            self.state.flush()  # after any pipelined response still queued
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.state.max_body_bytes:  # chunked bodies have no declared length
            raise _TooLarge
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        state = self.state
        request_id = state.next_request_id()
        method = self.parser.get_method()
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        outcome = state.app.prepare(method, self.url, self.content_type, self.accept, body, request_id)
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive:
            self.closing = True  # read nothing more; the connection closes once this request is answered
        started = self.started or time.perf_counter()
        self.started = None
        self.queued += 1
        state.enqueue(Queued(self, request_id, method, self.url, keep_alive, started, outcome))

    def respond(self, request: Queued, response: Response) -> None:
        self.queued -= 1
        keep_alive = request.keep_alive and not self.state.draining
        self.send(response, request.request_id, keep_alive)
        self.finish(request.method, request.path, response, request.request_id, request.started)
        if not keep_alive:
            self.close()

    # --- responses ----------------------------------------------------------------------------
    def send(self, response: Response, request_id: str, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        status, body = response.status, response.body
        if keep_alive and response.content_type is JSON and response.allow is None:  # nearly every response
            data = KEEP_ALIVE_JSON % (status, REASONS.get(status, b"Unknown"), len(body), request_id.encode(), body)
            self.state.defer_write(transport, data)
            return
        head = [
            b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nX-Request-Id: %s\r\n"
            % (status, REASONS.get(status, b"Unknown"), len(body), request_id.encode())
        ]
        if response.content_type:
            head.append(b"Content-Type: %s\r\n" % response.content_type)
        if response.allow:
            head.append(b"Allow: %s\r\n" % response.allow)
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        data = b"".join(head)
        if keep_alive:
            self.state.defer_write(transport, data)
        else:
            self.state.flush_writes()  # earlier pipelined responses go first
            transport.write(data)

    def finish(self, method: bytes, url: bytes, response: Response, request_id: str, started: float) -> None:
        state = self.state
        latency_ms = (time.perf_counter() - started) * 1000
        path = url.split(b"?", 1)[0]
        if path == b"/ping" and response.status == 200:
            return  # health checks every few seconds would drown the request log
        state.metrics.observe(response.status, latency_ms, response.rows, response.probability_sum, response.positives)
        record = {
            "level": "info" if response.status < 500 else "error",
            "event": "request",
            "request_id": request_id,
            "worker": state.worker,
            "method": method.decode("latin-1"),
            "path": path.decode("latin-1"),
            "status": response.status,
            "rows": response.rows,
            "latency_ms": round(latency_ms, 3),
            "model_version": state.metrics.model_version,
        }
        if response.error_code:
            record["error_code"] = response.error_code
        state.logs.write(record)

    def reject(self, status: int, code: str, message: str) -> None:
        """Answer a request that cannot be read to the end, then close our side of the connection."""
        self.state.flush()  # the requests received before it are answered first
        request_id = self.state.next_request_id()
        body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
        response = Response(status, body, error_code=code)
        self.send(response, request_id, keep_alive=False)
        try:
            method = self.parser.get_method()
        except httptools.HttpParserError:  # the request line itself was malformed
            method = b"-"
        self.finish(method, self.url, response, request_id, self.started or time.perf_counter())
        self.started = None
        self.close(linger=True)

    def close(self, linger: bool = False) -> None:
        """Close the connection; with linger, half-close first so a client still sending can read our
        response instead of losing it to a TCP reset, and discard what it sends for a moment."""
        self.closing = True
        self.started = None
        if self.transport is None or self.transport.is_closing():
            return
        self.state.flush_writes()  # a deferred response must not be dropped by the close
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    @property
    def busy(self) -> bool:
        return self.started is not None or self.queued > 0


@dataclass(slots=True)
class Queued:
    """A fully received request waiting for its response: the response itself, or its validated rows."""

    connection: HttpConnection
    request_id: str
    method: bytes
    path: bytes
    keep_alive: bool
    started: float
    outcome: Response | np.ndarray


class _TooLarge(Exception):
    """Raised inside parser callbacks; httptools re-raises it wrapped in HttpParserCallbackError."""
