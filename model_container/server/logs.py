"""Structured JSON log lines, buffered and written in pipe-atomic chunks."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

# Writes of at most PIPE_BUF bytes to a pipe are atomic, so lines from several workers sharing
# stdout never interleave mid-line.
PIPE_BUF = 4096


_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")


def utc_timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds. Runs once per request, and requests in the same millisecond
    share the string: the formatted millisecond and second are cached."""
    global _second_cache, _milli_cache
    milli = int(now * 1000)
    if milli == _milli_cache[0]:
        return _milli_cache[1]
    second, fraction = divmod(milli, 1000)
    if second != _second_cache[0]:
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    _milli_cache = (milli, f"{_second_cache[1]}.{fraction:03d}Z")
    return _milli_cache[1]


class LogWriter:
    """Buffers one JSON object per line and writes them to a file descriptor on flush()."""

    def __init__(self, fd: int = 1, max_buffered: int = 64 * 1024) -> None:
        self.fd, self.max_buffered = fd, max_buffered
        self.lines: list[bytes] = []
        self.size = 0

    def write(self, record: dict[str, Any], now: float | None = None) -> None:
        record["time"] = utc_timestamp(time.time() if now is None else now)
        line = orjson.dumps(record) + b"\n"
        self.lines.append(line)
        self.size += len(line)
        if self.size >= self.max_buffered:
            self.flush()

    def write_now(self, record: dict[str, Any]) -> None:
        self.write(record)
        self.flush()

    def flush(self) -> None:
        chunk = b""
        for line in self.lines:
            if chunk and len(chunk) + len(line) > PIPE_BUF:
                self._write_all(chunk)
                chunk = b""
            chunk += line
        if chunk:
            self._write_all(chunk)
        self.lines, self.size = [], 0

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError:  # stdout gone: nothing better to do than drop the logs
                return
            view = view[written:]


class RequestLog:
    """One `request` line per answered request, with successful fast requests sampled.

    Errors (status >= 400, including 499 for a response the client left before it could be sent) and requests
    slower than `slow_ms` are always logged; of the others a fraction `sample` is (deterministically: every
    1/sample-th), and those lines carry `sample_rate` so counts can be scaled back. Metrics stay exact: they are
    aggregated before sampling (http.HttpConnection.finish).
    """

    def __init__(self, logs: LogWriter, sample: float = 1.0, slow_ms: float = 1000.0) -> None:
        self.logs, self.sample, self.slow_ms = logs, sample, slow_ms
        self.credit = 1.0 - sample  # the first successful request is logged

    def request(
        self,
        request_id: str,
        worker: int,
        method: bytes,
        path: bytes,
        status: int,
        rows: int,
        latency_ms: float,
        model_version: str,
        error_code: str | None,
    ) -> None:
        sampled = status < 400 and latency_ms < self.slow_ms and self.sample < 1.0
        if sampled:
            self.credit += self.sample
            if self.credit < 1.0 or self.sample <= 0.0:
                return
            self.credit -= 1.0
        record: dict[str, Any] = {
            "level": "info" if status < 500 else "error",
            "event": "request",
            "request_id": request_id,
            "worker": worker,
            "method": method.decode("latin-1"),
            "path": path.decode("latin-1"),
            "status": status,
            "rows": rows,
            "latency_ms": round(latency_ms, 3),
            "model_version": model_version,
        }
        if error_code:
            record["error_code"] = error_code
        if sampled:
            record["sample_rate"] = self.sample
        self.logs.write(record)
