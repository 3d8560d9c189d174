"""Fuzzed bodies never cause a 500 or a crash, and concurrent clients all get answers."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.model_container.task_packages import cycle_rows

# Starts real servers; one xdist worker shares the session server.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model_server")]


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda c: st.lists(c, max_size=32) | st.dictionaries(st.text(max_size=20), c, max_size=4),
    max_leaves=64,
)
BODIES = (
    st.binary(max_size=512)
    | JSON_VALUES.map(lambda v: json.dumps({"instances": v}).encode())
    | st.lists(st.lists(st.floats(), min_size=28, max_size=31), min_size=1, max_size=3).map(
        lambda rows: json.dumps({"instances": rows}).encode()
    )
    | st.text(alphabet="0123456789.,-eE \n", max_size=300).map(str.encode)
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "text/csv",
        "text/csv; charset=utf-8",
        "APPLICATION/JSON;x=1",
        "",
        "text/html",
        "application/json; charset",
    ]
)


class Client(threading.local):
    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_fuzzed_bodies_never_500(server, body: bytes, content_type: str) -> None:
    conn = server.connection()
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request("POST", "/invocations", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    assert response.status in (200, 400, 415), payload
    document = json.loads(payload)
    assert ("predictions" in document) if response.status == 200 else ("error" in document)


def test_server_still_healthy_after_fuzzing(server) -> None:
    assert server.request("GET", "/ping")[0] == 200
    assert not [r for r in server.log_records() if r.get("level") == "error"]


def test_concurrent_clients_without_errors(server, holdout_rows) -> None:
    rows = cycle_rows(holdout_rows, 47)  # a holdout may have fewer than 47 rows (wine's has 36)
    bodies = [json.dumps({"instances": rows[i : i + 1 + i % 7]}).encode() for i in range(40)]

    def client(index: int) -> list[tuple[int, int]]:
        conn = server.connection()
        results = []
        for body in bodies:
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            results.append((response.status, len(json.loads(response.read())["predictions"])))
        conn.close()
        return results

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(client, range(16)))
    expected = [(200, len(json.loads(b)["instances"])) for b in bodies]
    assert all(outcome == expected for outcome in outcomes)


def test_ping_stays_fast_under_load(server, holdout_rows) -> None:
    body = json.dumps({"instances": holdout_rows * 20}).encode()  # ~2,300 rows per request
    stop = threading.Event()

    def hammer() -> None:
        conn = server.connection()
        while not stop.is_set():
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    worst = 0.0
    try:
        for _ in range(20):
            started = time.perf_counter()
            status, _, _ = server.request("GET", "/ping")
            worst = max(worst, time.perf_counter() - started)
            assert status == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(f"slowest ping under load: {worst * 1000:.1f} ms")
    assert worst < 1.0, f"slowest ping took {worst:.3f}s"  # SageMaker gives up after 2 s
