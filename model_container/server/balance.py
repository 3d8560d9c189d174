"""Which worker gets a new connection: the one on the CPU that handles the connection's packets, unless
that worker already holds more than its share of the open connections.

With one worker per CPU (the default), worker i is pinned to CPU i and sets SO_INCOMING_CPU = i on its
SO_REUSEPORT listening socket: the kernel (Linux >= 6.1) then hands a new connection to the worker on
the CPU that processed its SYN, so a connection's packets, its worker and often its client stay on one
CPU. Without it the kernel spreads connections by a hash of their addresses, and each worker keeps
waking processes on the other CPUs; on a 2-vCPU VM shared with the load generator that made the
single-row p99 3-4 ms instead of under 1 ms (model_container/README.md, "Connection placement").

The CPU that handles a SYN can be the same for many connections (one client thread opening them all,
one NIC queue), so each worker publishes its open connection count in memory the supervisor shares with
all workers; a worker holding more than its share (total / workers, rounded up) clears SO_INCOMING_CPU
and new connections on its CPU are spread by hash again, until it is back within its share.
Older kernels accept the option and keep spreading by hash.
"""

from __future__ import annotations

import mmap
import os
import socket

SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)  # Linux value; Python >= 3.11 names it
NO_CPU = -1


class ConnectionCounts:
    """Open connections and model readiness per worker, in anonymous shared memory created before the workers
    are forked; `served()` turns true once every worker has had its model loaded at the same time."""

    def __init__(self, workers: int) -> None:
        self._memory = mmap.mmap(-1, 8 * (2 * workers + 1))  # MAP_SHARED: forked workers see each other's writes
        view = memoryview(self._memory).cast("q")
        self.counts, self._ready, self._served = view[:workers], view[workers : 2 * workers], view[2 * workers :]

    def __len__(self) -> int:
        return len(self.counts)

    def set(self, index: int, value: int) -> None:
        self.counts[index] = value

    def total(self) -> int:
        return sum(self.counts)

    def set_ready(self, index: int, ready: bool) -> None:
        self._ready[index] = int(ready)
        if ready and all(self._ready):
            self._served[0] = 1

    def served(self) -> bool:
        return bool(self._served[0])


def worker_cpu(index: int, workers: int, cpus: set[int] | None = None) -> int | None:
    """The CPU worker `index` is pinned to: with exactly one worker per usable CPU (and more than one
    CPU), worker i gets the i-th CPU; otherwise None and workers float as before."""
    usable = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(usable) < 2 or len(usable) != workers:
        return None
    return usable[index]


class CpuSteering:
    """Keeps one worker's SO_INCOMING_CPU preference on while it holds no more than its share."""

    def __init__(self, sock: socket.socket, cpu: int | None, counts: ConnectionCounts, index: int) -> None:
        self.sock, self.cpu, self.counts, self.index = sock, cpu, counts, index
        self.steering = False
        self.connections_changed(0)

    def connections_changed(self, open_connections: int) -> None:
        """Called when this worker's number of open connections changes (not per request)."""
        counts = self.counts
        counts.set(self.index, open_connections)
        if self.cpu is None:
            return
        share = -(-counts.total() // len(counts))
        wanted = open_connections <= share
        if wanted is self.steering:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, self.cpu if wanted else NO_CPU)
        except OSError:  # a kernel without the option: the hash spread it always had
            self.cpu = None
            return
        self.steering = wanted
