"""The load test paces itself below its usage plan and retries throttling instead of failing on it (issue 13 item 4).

A stand-in for API Gateway's per-key throttle on 127.0.0.1: a token bucket with the plan's rate and burst that
answers 429 {"error": {"code": "throttled"}} when empty, as API Gateway does for a key over its usage plan
("Throttle requests to your REST APIs for better throughput in API Gateway": token bucket, "Clients may receive 429
Too Many Requests"); the API's THROTTLED gateway response carries code "throttled", QUOTA_EXCEEDED "quota_exceeded"
(ml_constructs/prediction_api.py).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from model_container.card import ModelCard
from scripts import smoke_test
from scripts.smoke_test import MODEL_CARD, main

KEY = "pipeline-test-key"
# The default build's card: what the smoke test reads when no --card is given.
CARD = ModelCard.load(MODEL_CARD)


class Bucket:
    """API Gateway's token bucket: `rate` tokens per second, at most `burst` stored."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = float(burst), time.monotonic()
        self.lock = threading.Lock()
        self.accepted: list[float] = []
        self.throttled = 0

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                self.throttled += 1
                return False
            self.tokens -= 1
            self.accepted.append(now)
            return True


class ThrottledApi(BaseHTTPRequestHandler):
    bucket: Bucket
    quota_left: list[int]
    every_nth_throttled: int = 0  # API Gateway throttles "on a best-effort basis": also below the plan now and then
    served: list[int]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if self.headers.get("x-api-key") != KEY:
            return self.reply(403, {"error": {"code": "forbidden", "message": "Forbidden", "request_id": "r"}})
        if not isinstance(body.get("instances"), list):
            return self.reply(400, {"error": {"code": "invalid_request", "message": "bad", "request_id": "r"}})
        if self.quota_left[0] <= 0:
            return self.reply(429, {"error": {"code": "quota_exceeded", "message": "quota", "request_id": "r"}})
        with self.bucket.lock:
            self.served[0] += 1
            sporadic = bool(self.every_nth_throttled) and self.served[0] % self.every_nth_throttled == 0
        # One handler per keep-alive connection, i.e. per load-test thread: a retry is never throttled sporadically.
        sporadic = sporadic and not getattr(self, "just_throttled", False)
        self.just_throttled = sporadic
        if sporadic or not self.bucket.take():
            return self.reply(429, {"error": {"code": "throttled", "message": "retry", "request_id": "r"}})
        self.quota_left[0] -= 1
        predictions = [CARD.response_example() for _ in body["instances"]]
        self.reply(200, {"predictions": predictions})


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[tuple[str, Bucket]]:
    rate, burst, quota, every_nth = getattr(request, "param", (20.0, 5, 10**6, 0))
    bucket = Bucket(rate, burst)
    attributes = {"bucket": bucket, "quota_left": [quota], "every_nth_throttled": every_nth, "served": [0]}
    handler = type("Handler", (ThrottledApi,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1/predict", bucket
    server.shutdown()
    server.server_close()


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK formula with b = 0.25 instead of uniform [0, 1]: the same retries, in test time.
    monkeypatch.setattr(random, "random", lambda: 0.25)


def smoke(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--url", url, "--api-key", KEY, "--rows", "3", "--p99-ms", "5000", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_a_paced_load_test_stays_under_its_plan_and_passes(api, capsys) -> None:
    url, bucket = api  # plan: 20 requests/s, burst 5
    started = time.monotonic()
    code, report, err = smoke(capsys, url, "--requests", "40", "--concurrency", "8", "--rate", "16")
    assert code == 0, err
    assert report["load"]["errors"] == {} and bucket.throttled == 0
    # 44 requests (4 cases + 40) spaced 1/16 s apart take at least 43/16 s; no second holds more than 16 + 1 (one
    # more for a late wake-up of the machine running the test).
    assert time.monotonic() - started >= 43 / 16 - 0.1
    assert max(sum(1 for t in bucket.accepted if s <= t < s + 1) for s in bucket.accepted) <= 18


@pytest.mark.parametrize("api", [(1000.0, 1000, 10**6, 5)], indirect=True)
def test_throttling_is_retried_instead_of_failing_the_load_test(api, capsys, short_backoff) -> None:
    url, _ = api  # every 5th request answered 429 throttled, well below the plan's rate
    code, report, err = smoke(capsys, url, "--requests", "60", "--concurrency", "4")
    assert code == 0, err
    assert report["load"]["errors"] == {} and report["load"]["throttled_retries"] >= 10


def test_throttling_that_outlasts_the_retries_fails_the_load_test(api, capsys, short_backoff) -> None:
    url, _ = api  # 8 back-to-back threads against a plan of 20 requests/s, no retry allowed
    code, report, err = smoke(capsys, url, "--requests", "60", "--concurrency", "8", "--max-attempts", "1")
    assert code == 1 and report["load"]["errors"].get("status 429", 0) > 0
    assert "requests failed" in err


@pytest.mark.parametrize("api", [(100.0, 100, 10, 0)], indirect=True)
def test_a_used_up_quota_is_not_retried(api, capsys, short_backoff) -> None:
    url, _ = api
    code, report, _ = smoke(capsys, url, "--requests", "20", "--concurrency", "2", "--rate", "50")
    assert code == 1
    assert report["load"]["errors"]["status 429"] == 20 - (10 - 2) and report["load"]["throttled_retries"] == 0


def test_backoff_follows_the_sdk_standard_formula() -> None:
    # "Retry behavior" (AWS SDKs and Tools Reference Guide): min(b * 2^i, MAX_BACKOFF), b uniform in [0, 1], 20 s.
    assert [smoke_test.backoff_s(i, lambda: 1.0) for i in range(7)] == [1, 2, 4, 8, 16, 20, 20]
    assert smoke_test.backoff_s(3, lambda: 0.5) == 4


def test_the_pacer_never_bursts_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]  # a fake clock: the pacer's spacing without the test machine's scheduling jitter
    monkeypatch.setattr(smoke_test.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(smoke_test.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    pacer, starts = smoke_test.Pacer(50.0), []
    for index in range(20):
        if index == 10:
            clock[0] += 0.3  # a slow stretch: the next requests must not catch up on the slots they missed
        pacer.wait()
        starts.append(clock[0])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(1 / 50)
    assert gaps[9] == pytest.approx(0.3)


def test_the_default_time_budget_leaves_room_for_a_paced_run() -> None:
    assert smoke_test.default_budget_s(2000, 30.0) >= 2000 / 30
    assert smoke_test.default_budget_s(200, None) == 120.0
