"""Connection placement: worker pinning, the shared connection counts and SO_INCOMING_CPU steering."""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Iterator

import pytest

from model_container.server.balance import SO_INCOMING_CPU, ConnectionCounts, CpuSteering, worker_cpu


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def test_one_worker_per_cpu_is_pinned_in_cpu_order() -> None:
    assert [worker_cpu(i, 2, {0, 1}) for i in range(2)] == [0, 1]
    assert [worker_cpu(i, 2, {5, 2}) for i in range(2)] == [2, 5]
    assert worker_cpu(0, 3, {0, 1}) is None  # more workers than CPUs: no pinning
    assert worker_cpu(0, 1, {0, 1}) is None  # fewer
    assert worker_cpu(0, 1, {3}) is None  # a single CPU: nothing to steer


def test_counts_are_shared_with_forked_workers() -> None:
    counts = ConnectionCounts(2)
    pid = os.fork()
    if pid == 0:
        counts.set(1, 7)
        os._exit(0)
    os.waitpid(pid, 0)
    counts.set(0, 3)
    assert list(counts.counts) == [3, 7] and counts.total() == 10 and len(counts) == 2


def test_steering_is_dropped_while_a_worker_holds_more_than_its_share(listener: socket.socket) -> None:
    counts = ConnectionCounts(2)
    steering = CpuSteering(listener, 1, counts, 0)

    def preference() -> int:
        return listener.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU)

    assert steering.steering and preference() == 1
    counts.set(1, 2)
    steering.connections_changed(2)  # 2 of 4: its share
    assert preference() == 1
    steering.connections_changed(3)  # 3 of 5: share is 3
    assert preference() == 1
    steering.connections_changed(4)  # 4 of 6: more than 3
    assert not steering.steering and preference() == -1
    steering.connections_changed(3)
    assert steering.steering and preference() == 1
    assert list(counts.counts) == [3, 2]


def test_unpinned_worker_only_publishes_its_count(listener: socket.socket) -> None:
    counts = ConnectionCounts(2)
    steering = CpuSteering(listener, None, counts, 1)
    steering.connections_changed(5)
    assert list(counts.counts) == [0, 5] and not steering.steering
    assert listener.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU) == -1


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = platform.release().split("-")[0].split(".")
    return (int(numbers[0]), int(numbers[1])) >= (major, minor)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.skipif(not _kernel_at_least(6, 1), reason="SO_INCOMING_CPU steers SO_REUSEPORT groups since Linux 6.1")
def test_kernel_hands_connections_to_the_listener_of_their_cpu(listener: socket.socket) -> None:
    cpus = sorted(os.sched_getaffinity(0))[:2]
    port = listener.getsockname()[1]
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", port))
    other.listen(64)
    listeners = [listener, other]
    for sock, cpu in zip(listeners, cpus, strict=True):
        sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, cpu)
        sock.setblocking(False)

    def accepted_from(cpu: int) -> list[int]:
        """Connect from `cpu` (loopback handles the SYN on the connecting CPU); count accepts per listener."""
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        got = [0, 0]
        for i, sock in enumerate(listeners):
            while True:
                try:
                    connection, _ = sock.accept()
                except BlockingIOError:
                    break
                connection.close()
                got[i] += 1
        for client in clients:
            client.close()
        return got

    original = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpus[1]})
        assert accepted_from(cpus[1]) == [0, 20]
        listeners[1].setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, -1)  # over its share: hash spread again
        spread = accepted_from(cpus[1])
        assert sum(spread) == 20 and min(spread) > 0
    finally:
        os.sched_setaffinity(0, original)
        other.close()
