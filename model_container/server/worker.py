"""One serving process: listens with SO_REUSEPORT, loads the model off the event loop, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
import traceback

import uvloop

from model_container.server.app import InferenceApp
from model_container.server.balance import ConnectionCounts, CpuSteering, worker_cpu
from model_container.server.batch import BatchInferenceApp, execution_parameters
from model_container.server.config import ServerConfig
from model_container.server.http import HttpConnection, ServerState
from model_container.server.logs import LogWriter, RequestLog
from model_container.server.metrics import MetricsAggregator
from model_container.server.model import LoadedModel, ModelLoadError

TICK_S = 0.5  # log flush, timeout sweep and drain checks run at this cadence
# After SIGTERM a connection idle for this long (no request begun) is closed if nothing is unread on it; a busy one
# is closed after the response that leaves nothing to answer, which says `Connection: close`.
DRAIN_IDLE_TICKS = 1
# After the drain deadline, responses already handed over get this long to leave before the loop stops.
FINAL_FLUSH_S = 1.0
# A worker holding less than this part of its share of the connections is starved (after a restart it holds none).
STARVED_SHARE = 0.6


BACKLOG = 2048


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """The worker's socket on the shared port; with listen=False bound only, so that the kernel hands it no
    connection until it listens (SO_REUSEPORT spreads new connections over the group's listening sockets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Every worker binds the same port; the kernel spreads new connections across them.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


class Worker:
    """Serves HTTP on the shared port; /ping turns 200 once its own model copy is loaded and warm."""

    def __init__(self, config: ServerConfig, index: int, counts: ConnectionCounts | None = None) -> None:
        self.config, self.index = config, index
        self.counts = counts if counts is not None else ConnectionCounts(config.workers)
        self.logs = LogWriter()
        # Batch Transform (SAGEMAKER_BATCH=true) adds to the real-time contract; real-time serving is unchanged.
        self.app = (
            BatchInferenceApp(self.logs, execution_parameters(config)) if config.batch else InferenceApp(self.logs)
        )
        self.metrics = MetricsAggregator("unknown", index)
        self.state = ServerState(
            self.app,
            self.logs,
            self.metrics,
            config.max_body_bytes,
            index,
            request_log=RequestLog(self.logs, config.request_log_sample, config.slow_request_ms),
            max_connections=config.max_connections,
        )
        self.loop = uvloop.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.sock: socket.socket | None = None
        self.cpu: int | None = None
        self.drain_deadline: float | None = None
        self.cut = False  # the drain deadline passed and the remaining connections were closed
        self.next_metrics_flush = time.monotonic() + config.metrics_interval_s

    def run(self) -> int:
        cpu = worker_cpu(self.index, self.config.workers) if self.config.pin_workers else None
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        asyncio.set_event_loop(self.loop)
        # At start every worker listens at once, and /ping answers 503 until all of them have the model. Once the
        # server has been ready, a restarted worker listens only when its own model is loaded: until then its
        # siblings take every connection, instead of it answering 503 to its share of them.
        early = not self.counts.served()
        self.sock = listening_socket(self.config.host, self.config.port, listen=early)
        self.cpu = cpu
        self.state.on_connections = CpuSteering(self.sock, cpu, self.counts, self.index).connections_changed
        self.app.siblings_ready = self.counts.served
        if early:
            self.loop.run_until_complete(self._listen())
        # The model loads in a thread so /ping can answer 503 meanwhile instead of hanging.
        threading.Thread(target=self._load_model, name="model-loader", daemon=True).start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.begin_shutdown)
        self.state.on_idle = self._stop_if_drained
        self.loop.call_later(TICK_S, self._tick)
        try:
            self.loop.run_forever()
        finally:
            self.state.flush()  # requests still held when the loop stopped get their log lines
            self._flush_metrics()
            self.logs.write_now(
                {"level": "info", "event": "worker_stopped", "worker": self.index, "requests": self.state.request_count}
            )
            self.loop.close()
        return 0

    async def _listen(self) -> None:
        if self.server is not None or self.state.draining:
            return
        self.server = await self.loop.create_server(lambda: HttpConnection(self.state), sock=self.sock, backlog=BACKLOG)
        self.logs.write_now(
            {
                "level": "info",
                "event": "worker_listening",
                "worker": self.index,
                "pid": os.getpid(),
                "uid": os.getuid(),
                "port": self.config.port,
                "cpu": self.cpu,
                "batch": self.config.batch,
            }
        )

    def _load_model(self) -> None:
        started = time.perf_counter()
        try:
            model = LoadedModel.load(self.config.model_dir)
        except ModelLoadError as exc:
            self.loop.call_soon_threadsafe(self._model_failed, str(exc), None)
        except Exception as exc:
            self.loop.call_soon_threadsafe(self._model_failed, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self.loop.call_soon_threadsafe(self._model_ready, model, time.perf_counter() - started)

    def _model_ready(self, model: LoadedModel, seconds: float) -> None:
        self.metrics.model_name, self.metrics.model_version = model.name, model.version
        self.metrics.task, self.metrics.class_names = model.task, model.label_names
        self.app.model = model
        # Everything allocated so far lives for the whole process: keep the cyclic GC from rescanning it.
        gc.freeze()
        self.logs.write_now(
            {
                "level": "info",
                "event": "model_ready",
                "worker": self.index,
                "model_name": model.name,
                "model_version": model.version,
                "content_sha256": model.card.content_sha256,
                "load_seconds": round(seconds, 3),
            }
        )
        # Logged first: once every worker is ready /ping answers 200, and the log already says which loaded.
        self.counts.set_ready(self.index, True)
        if self.server is None:  # a restarted worker: its share of connections starts now
            self.loop.create_task(self._listen())

    def _model_failed(self, reason: str, trace: str | None) -> None:
        # Stay up and answer 503: SageMaker then reports a failed health check, and the log says why.
        self.app.load_error = f"model failed to load: {reason}"
        record = {
            "level": "error",
            "event": "model_load_failed",
            "worker": self.index,
            "reason": reason,
            "model_dir": str(self.config.model_dir),
        }
        if trace:
            record["traceback"] = trace
        self.logs.write_now(record)

    def _tick(self) -> None:
        self._sweep(time.perf_counter())
        if time.monotonic() >= self.next_metrics_flush:
            self._flush_metrics()
        self.logs.flush()
        self._balance()
        if self.drain_deadline is not None:
            self._stop_if_drained()
        self.loop.call_later(TICK_S, self._tick)

    def _sweep(self, now: float) -> None:
        """408 for requests that take too long to arrive; close idle keep-alive connections (timeout, drain)."""
        timeout = self.config.timeout_s
        idle_limit = max(1, round(self.config.keepalive_timeout_s / TICK_S))
        draining = self.state.draining
        for connection in list(self.state.connections):
            if connection.started is not None and now - connection.started > timeout:
                connection.reject(408, "request_timeout", f"request not received within {timeout} s")
            elif connection.busy or connection.activity != connection.seen_activity:
                connection.seen_activity, connection.idle_ticks = connection.activity, 0
            else:
                connection.idle_ticks += 1  # no request begun for at least idle_ticks * TICK_S
                if connection.idle_ticks >= (DRAIN_IDLE_TICKS if draining else idle_limit):
                    connection.close_if_idle()

    def _balance(self) -> None:
        """A worker holding more than its share of the connections (after a restart the new worker holds none:
        every client reconnected to the survivors) asks the excess to reconnect, one `Connection: close` each."""
        counts = self.counts
        if len(counts) < 2 or self.state.draining:
            self.state.shed = 0
            return
        own = len(self.state.connections)
        share = -(-counts.total() // len(counts))
        # Only while another worker is starved: a mild imbalance is left alone (each shed connection is a reconnect).
        starved = min(counts.counts) < STARVED_SHARE * share
        self.state.shed = own - share if starved and own > share else 0

    def _flush_metrics(self) -> None:
        self.next_metrics_flush = time.monotonic() + self.config.metrics_interval_s
        for record in self.metrics.flush():
            self.logs.write(record)

    def begin_shutdown(self) -> None:
        """Stop accepting; answer every request already sent; close each connection once nothing is left on it."""
        if self.drain_deadline is not None:
            return
        self.state.draining = True
        self.drain_deadline = time.monotonic() + self.config.drain_timeout_s
        busy = sum(1 for c in self.state.connections if c.busy)
        self.logs.write_now({"level": "info", "event": "worker_draining", "worker": self.index, "in_flight": busy})
        if self.server is not None:
            self.server.close()
        for connection in list(self.state.connections):
            if connection.idle_ticks > DRAIN_IDLE_TICKS:  # idle for a while already: a request now is unlikely
                connection.close_if_idle()
        self._stop_if_drained()

    def _stop_if_drained(self) -> None:
        if self.drain_deadline is None or not self.loop.is_running():
            return
        now = time.monotonic()
        if not self.state.connections or now >= self.drain_deadline + FINAL_FLUSH_S:
            self.loop.stop()
        elif now >= self.drain_deadline and not self.cut:
            self.cut = True
            self.state.flush()  # whatever is received gets its answer first
            for connection in list(self.state.connections):
                if connection.started is not None:  # still arriving: answer it rather than drop it unlogged
                    connection.reject(503, "shutting_down", "the server stopped before the request arrived in full")
                else:
                    connection.close()
            self.loop.call_later(FINAL_FLUSH_S, self._stop_if_drained)


def run_worker(config: ServerConfig, index: int, counts: ConnectionCounts) -> int:
    return Worker(config, index, counts).run()
