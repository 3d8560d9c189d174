"""HTTP/1.1 transport: an asyncio protocol over httptools' parser, keep-alive and pipelining aware.

What it guarantees (tests/model_container/test_http_robustness.py checks each, with raw sockets):
- one response per request, in order; requests after one that said `Connection: close` are not processed
  (RFC 9112 section 9.6); Upgrade is ignored (RFC 9110 section 7.8 lets a server ignore it), the connection
  then closes after the response; a HEAD response has no body;
- the request line and headers of each request are limited to MAX_HEAD_BYTES, however TCP splits them;
- a Content-Length over the body limit is refused (413) before any body byte is read, whatever its digits;
- a connection stops being read while its unsent responses exceed the transport's write high-water mark
  (pause_writing), so a client that pipelines and never reads cannot grow the worker's memory;
- a connection is closed only when nothing is unread on it; on SIGTERM each connection's last response
  carries `Connection: close` (worker.py drives the drain, the idle timeout and the connection cap);
- a request log line (and the metrics) for every response that was handed to the kernel, and none for others.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import termios
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
from model_container.server.logs import LogWriter, RequestLog
from model_container.server.metrics import MetricsAggregator

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER_S = 2.0
MAX_HEAD_BYTES = 64 * 1024
# Digits of a Content-Length beyond which it exceeds any body limit (leading zeros stripped first).
MAX_LENGTH_DIGITS = 15
# The same head as the general case in HttpConnection.send, in one formatting step.
KEEP_ALIVE_JSON = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nX-Request-Id: %s\r\nContent-Type: " + JSON + b"\r\n\r\n%s"
# Status logged for a response that could not be sent because the client had gone (nginx's convention).
CLIENT_CLOSED = 499
# Per-worker write buffer marks (uvloop's defaults are 64 KiB / 16 KiB): above HIGH, stop reading the client.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024
# Requests one connection may have received and not yet answered before it stops being read. libuv reads a ready
# socket up to 32 times (256 KiB each) before the loop answers anything, so without this a client that pipelines
# 8 MB gets 250,000 requests parsed and held at once.
MAX_PIPELINED = 64
FEED_SLICE = 64 * 1024  # larger reads are parsed in slices, so a read holds at most one slice of extra requests


@dataclass
class ServerState:
    """What every connection of one worker shares."""

    app: InferenceApp
    logs: LogWriter
    metrics: MetricsAggregator
    max_body_bytes: int
    worker: int
    request_log: RequestLog | None = None
    max_connections: int = 1 << 30
    connections: set[HttpConnection] = field(default_factory=set)
    draining: bool = False
    request_prefix: str = field(default_factory=lambda: os.urandom(4).hex())
    request_count: int = 0
    shed: int = 0  # keep-alive connections to close after their next response (worker.py: share of connections)
    on_idle: Callable[[], None] | None = None
    on_connections: Callable[[int], None] | None = None  # called with the open connection count when it changes
    pending_writes: list[tuple[asyncio.Transport, bytes]] = field(default_factory=list)
    pending_requests: list[Queued] = field(default_factory=list)
    flush_scheduled: bool = False

    def __post_init__(self) -> None:
        if self.request_log is None:
            self.request_log = RequestLog(self.logs)

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
        # Log lines first: a response a client holds always has its line written, even if the worker is killed.
        self.logs.flush()
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
        self.activity = 0  # requests begun on this connection; the worker's idle sweep compares it between ticks
        self.idle_ticks = 0
        self.seen_activity = -1
        self.last_queued: Queued | None = None
        self.write_paused = False
        self.backlog = b""  # bytes read while MAX_PIPELINED requests waited, not yet fed to the parser
        self.head_size = 0  # bytes of the current request head received so far
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.content_type = b""
        self.accept = b""
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.body_size = 0
        self.header_bytes = 0
        self.in_head = True
        self.began_in_feed = False

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        state = self.state
        state.connections.add(self)
        if state.on_connections:
            state.on_connections(len(state.connections))
        if len(state.connections) > state.max_connections:
            self.reject(503, "too_many_connections", f"this worker holds {state.max_connections} connections; retry")
            return
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        self.closing = True
        if state.on_connections:
            state.on_connections(len(state.connections))
        if state.draining and state.on_idle:
            state.on_idle()

    def pause_writing(self) -> None:
        # The client is not reading its responses: stop reading its requests until the buffer drains.
        self.write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume()

    def _pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.write_paused or self.queued >= MAX_PIPELINED or self.closing:
            return
        if self.backlog:  # not from inside a flush: the requests it holds must be batched by the next one
            asyncio.get_running_loop().call_soon(self._feed_backlog)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if len(data) <= FEED_SLICE:
            self._feed(data)
        else:
            self._feed_slices(data)

    def _feed_slices(self, data: bytes) -> None:
        """Feed a large read in slices, and keep what is left once MAX_PIPELINED requests wait for answers."""
        for start in range(0, len(data), FEED_SLICE):
            if self.closing:
                return
            if self.queued >= MAX_PIPELINED:
                self.backlog = data[start:]  # reading is paused; fed again once the queue drains (_resume)
                return
            self._feed(data[start : start + FEED_SLICE])

    def _feed_backlog(self) -> None:
        data, self.backlog = self.backlog, b""
        if data and not self.closing:
            self._feed_slices(data)
        self._resume()

    def _feed(self, data: bytes) -> None:
        carried = self.head_size if self.in_head else 0  # head bytes of an unfinished request from earlier reads
        self.accounted = 0  # bytes of this read that belong to requests finished or bodies, as far as known
        self.began_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, _TooLarge):
                limit_mb = self.state.max_body_bytes // (1024 * 1024)
                self.reject(413, "payload_too_large", f"body exceeds {limit_mb} MB")
            elif isinstance(context, _HeadTooLarge):
                self._reject_head()
            else:
                self.state.logs.write_now(
                    {
                        "level": "error",
                        "event": "connection_failed",
                        "traceback": "".join(traceback.format_exception(context or exc)),
                    }
                )
                self.reject(500, "internal_error", "internal error while handling the connection")
            return
        except httptools.HttpParserUpgrade:
            self._ignore_upgrade()
            return
        except httptools.HttpParserError as exc:
            if not self.closing:
                self.reject(400, "bad_request", f"malformed HTTP request: {exc}")
            return
        if self.in_head and not self.closing:  # httptools buffers an unfinished head without limit
            if self.began_in_feed:  # the head started in this read, after what earlier requests used of it
                self.head_size = max(0, len(data) - self.accounted)
            else:
                self.head_size = carried + len(data)
            if self.head_size > MAX_HEAD_BYTES:
                self._reject_head()

    def _reject_head(self) -> None:
        self.reject(431, "headers_too_large", f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def _ignore_upgrade(self) -> None:
        """Upgrade / CONNECT: the request was answered as a plain one; nothing after it is read."""
        if self.last_queued is not None and self.queued:
            self.last_queued.keep_alive = False
            self.closing = True
        elif not self.closing:
            self.reject(400, "bad_request", "protocol upgrades are not supported")

    # --- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.started = time.perf_counter()
        self.activity += 1
        self.head_size = 0
        self._reset()
        self.began_in_feed = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        name = name.lower()
        if name == b"content-type":
            self.content_type = value
        elif name == b"accept":
            self.accept = value
        elif name == b"content-length":
            digits = value.strip().lstrip(b"0")
            # int() refuses strings of more than 4,300 digits; a length that long exceeds any limit anyway.
            if len(digits) > MAX_LENGTH_DIGITS or (digits.isdigit() and int(digits) > self.state.max_body_bytes):
                raise _TooLarge  # refused before reading: the body is never buffered
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        # method SP target SP HTTP/x.y CRLF, the headers, CRLF: this request's head, whatever the reads were.
        head = len(self.parser.get_method()) + len(self.url) + 12 + self.header_bytes + 2
        if head > MAX_HEAD_BYTES:
            raise _HeadTooLarge
        self.accounted += head if self.began_in_feed else max(0, head - self.head_size)
        self.head_size = 0
        # RFC 9110 section 10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request.
        if self.expect_continue and self.transport and self.parser.get_http_version() != "1.0":
            self.state.flush()  # after any pipelined response still queued
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        self.accounted += len(body)
        if self.body_size > self.state.max_body_bytes:  # chunked bodies have no declared length
            raise _TooLarge
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        state = self.state
        if self.closing:  # after a request that closes the connection: not processed (RFC 9112 section 9.6)
            self.started = None
            return
        request_id = state.next_request_id()
        method = self.parser.get_method()
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        outcome = state.app.prepare(method, self.url, self.content_type, self.accept, body, request_id)
        keep_alive = self.parser.should_keep_alive()
        http10 = self.parser.get_http_version() == "1.0"
        if not keep_alive:
            self.closing = True  # read nothing more; the connection closes once this request is answered
        started = self.started or time.perf_counter()
        self.started = None
        self.queued += 1
        if self.queued == MAX_PIPELINED:
            self._pause()  # resumed once they are answered (respond)
        queued = Queued(self, request_id, method, self.url, keep_alive, started, outcome, http10)
        self.last_queued = queued
        state.enqueue(queued)

    def respond(self, request: Queued, response: Response) -> None:
        self.queued -= 1
        if self.queued == MAX_PIPELINED - 1:
            self._resume()
        state = self.state
        keep_alive = request.keep_alive
        if keep_alive and (state.draining or state.shed) and not self.more_to_answer():
            keep_alive = False  # the last response of this connection: say so, then close
            if not state.draining:
                state.shed -= 1
        sent = self.send(response, request.request_id, keep_alive, request.method == b"HEAD", request.http10)
        self.finish(request.method, request.path, response, request.request_id, request.started, sent)
        if not keep_alive:
            self.close()

    def more_to_answer(self) -> bool:
        """A request queued or being received, or bytes the client sent that are not read yet."""
        return self.busy or self.unread_bytes() > 0

    def unread_bytes(self) -> int:
        transport = self.transport
        if transport is None or transport.is_closing():
            return 0
        sock = transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        unread: int = struct.unpack("i", raw)[0]
        return unread

    # --- responses ----------------------------------------------------------------------------
    def send(
        self, response: Response, request_id: str, keep_alive: bool, head_only: bool = False, http10: bool = False
    ) -> bool:
        """Write (or queue) the response; False if the client is gone and nothing can be sent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        status, body = response.status, response.body
        if keep_alive and response.content_type is JSON and response.allow is None and not (head_only or http10):
            data = KEEP_ALIVE_JSON % (status, REASONS.get(status, b"Unknown"), len(body), request_id.encode(), body)
            self.state.defer_write(transport, data)
            return True
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
        elif http10:  # HTTP/1.0 closes by default: a kept connection must be announced
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        if not head_only:  # RFC 9110 section 9.3.2: HEAD gets the GET's headers and no content
            head.append(body)
        # Queued behind earlier pipelined responses; a closing response goes out in close(), after its log line.
        self.state.defer_write(transport, b"".join(head))
        return True

    def finish(
        self, method: bytes, url: bytes, response: Response, request_id: str, started: float, sent: bool = True
    ) -> None:
        state = self.state
        latency_ms = (time.perf_counter() - started) * 1000
        path = url.split(b"?", 1)[0]
        status = response.status if sent else CLIENT_CLOSED
        if not (path == b"/ping" and status == 200):  # health checks every few seconds would drown the log
            state.metrics.observe(status, latency_ms, response.rows, response.tally)
            assert state.request_log is not None
            state.request_log.request(
                request_id,
                state.worker,
                method,
                path,
                status,
                response.rows,
                latency_ms,
                state.metrics.model_version,
                response.error_code if sent else "client_closed",
            )

    def reject(self, status: int, code: str, message: str) -> None:
        """Answer a request that cannot be read to the end, then close our side of the connection."""
        self.state.flush()  # the requests received before it are answered first
        request_id = self.state.next_request_id()
        body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
        response = Response(status, body, error_code=code)
        sent = self.send(response, request_id, keep_alive=False)
        try:
            method = self.parser.get_method() if self.started is not None else b"-"
        except httptools.HttpParserError:  # the request line itself was malformed
            method = b"-"
        self.finish(method, self.url or b"-", response, request_id, self.started or time.perf_counter(), sent)
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
            self.transport.resume_reading()  # read and discard what the client still sends
            asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def close_if_idle(self) -> bool:
        """Close a connection with nothing in progress and nothing unread; False if it has work after all."""
        if self.busy or self.unread_bytes():
            return False
        self.close()
        return True

    @property
    def busy(self) -> bool:
        return self.started is not None or self.queued > 0 or bool(self.backlog)


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
    http10: bool = False


class _TooLarge(Exception):
    """Raised inside parser callbacks; httptools re-raises it wrapped in HttpParserCallbackError."""


class _HeadTooLarge(Exception):
    """A complete request head over MAX_HEAD_BYTES (raised in on_headers_complete)."""
