"""Pre-fork supervisor: starts the workers, restarts crashed ones, turns SIGTERM into a drain."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType

from model_container.server.balance import ConnectionCounts
from model_container.server.config import ServerConfig
from model_container.server.logs import LogWriter

RESTART_BACKOFF_S = 1.0  # a worker that dies straight after start is not restarted in a tight loop


class Supervisor:
    """Forks `config.workers` processes running `worker_main` and waits for them."""

    def __init__(
        self, config: ServerConfig, logs: LogWriter, worker_main: Callable[[ServerConfig, int, ConnectionCounts], int]
    ) -> None:
        self.config, self.logs, self.worker_main = config, logs, worker_main
        # Each worker's open connection count, for the connection placement in balance.py.
        self.counts = ConnectionCounts(config.workers)
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
        self.stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGALRM, self._kill)
        for index in range(self.config.workers):
            self._spawn(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index, started = self.children.pop(pid, (-1, 0.0))
            if self.stopping or index < 0:
                continue
            self.logs.write_now(
                {
                    "level": "error",
                    "event": "worker_exited",
                    "worker": index,
                    "pid": pid,
                    "exit_status": os.waitstatus_to_exitcode(status),
                }
            )
            if time.monotonic() - started < RESTART_BACKOFF_S:
                time.sleep(RESTART_BACKOFF_S)
            if not self.stopping:
                self._spawn(index)
        self.logs.write_now({"level": "info", "event": "server_stopped"})
        return 0

    def _spawn(self, index: int) -> None:
        self.logs.flush()
        sys.stdout.flush()
        self.counts.set(index, 0)  # a crashed worker's connections died with it
        self.counts.set_ready(index, False)  # and its model copy: the new process loads its own
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
                    signal.signal(signum, signal.SIG_DFL)
                code = self.worker_main(self.config, index, self.counts)
            except BaseException:
                self.logs.write_now(
                    {"level": "error", "event": "worker_crashed", "worker": index, "traceback": traceback.format_exc()}
                )
            finally:
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        if self.stopping:  # SIGTERM arrived while forking
            os.kill(pid, signal.SIGTERM)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.logs.write_now(
            {"level": "info", "event": "server_draining", "signal": signum, "workers": len(self.children)}
        )
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        # Workers drain within drain_timeout_s; anything still alive a little later is killed.
        signal.alarm(int(self.config.drain_timeout_s) + 2)

    def _kill(self, signum: int, frame: FrameType | None) -> None:
        for pid in list(self.children):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
