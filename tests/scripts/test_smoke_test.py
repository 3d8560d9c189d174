"""The smoke test against a local stand-in of the API on 127.0.0.1: one that keeps the contract, and ones
that do not (wrong status codes, wrong prediction count, too slow)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scripts.smoke_test import main

KEY = "test-key"


class StubApi(BaseHTTPRequestHandler):
    """Behaves like API Gateway + the model for POST /api/v1/predict; `flaws` switch misbehaviours on."""

    flaws: frozenset[str] = frozenset()
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/api/v1/predict":
            return self.reply(404, {"message": "Not Found"})
        if self.headers.get("x-api-key") != KEY and "no_auth" not in self.flaws:
            return self.reply(403, {"error": {"code": "forbidden", "message": "Forbidden", "request_id": "r"}})
        instances = json.loads(body).get("instances")
        if not isinstance(instances, list) and "accepts_anything" not in self.flaws:
            return self.reply(400, {"error": {"code": "invalid_body", "message": "bad", "request_id": "r"}})
        if "slow" in self.flaws:
            time.sleep(0.05)
        rows = len(instances) if isinstance(instances, list) else 1
        if "drops_a_row" in self.flaws:
            rows = max(0, rows - 1)
        predictions = [{"label": 1, "probability": 0.9, "model_version": "1.0.0"} for _ in range(rows)]
        self.reply(200, {"predictions": predictions})


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[str]:
    flaws = frozenset(getattr(request, "param", ()))
    handler = type("Handler", (StubApi,), {"flaws": flaws})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1/predict"
    server.shutdown()
    server.server_close()


def smoke(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--url", url, "--api-key", KEY, *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_well_behaved_api_passes_cases_and_load(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = smoke(capsys, api, "--rows", "3", "--requests", "60", "--concurrency", "4", "--p99-ms", "2000")
    assert code == 0, err
    assert [c["passed"] for c in report["cases"]] == [True] * 4
    assert report["load"]["completed"] == 60 and report["load"]["errors"] == {}
    assert report["load"]["p99_ms"] <= 2000


@pytest.mark.parametrize(
    ("api", "failing_case"),
    [
        (["no_auth"], "missing API key -> 403"),
        (["accepts_anything"], "invalid body -> 400 JSON error"),
        (["drops_a_row"], "single row"),
    ],
    indirect=["api"],
)
def test_contract_violations_fail_with_the_case_named(
    api: str, failing_case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = smoke(capsys, api, "--requests", "10")
    assert code == 1
    assert failing_case in [c["name"] for c in report["cases"] if not c["passed"]]
    assert f"FAILED case '{failing_case}'" in err
    assert "load" not in report  # no load test against a broken contract


@pytest.mark.parametrize("api", [["slow"]], indirect=True)
def test_slow_api_fails_the_p99_threshold(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = smoke(capsys, api, "--requests", "20", "--concurrency", "2", "--p99-ms", "20")
    assert code == 1 and report["load"]["p99_ms"] > 20
    assert "p99 latency" in err


@pytest.mark.parametrize("api", [["slow"]], indirect=True)
def test_load_test_stops_at_the_time_budget(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, report, err = smoke(capsys, api, "--requests", "100000", "--concurrency", "2", "--time-budget-s", "0.5")
    assert time.monotonic() - started < 10
    assert code == 1 and report["load"]["stopped_on_budget"] is True
    assert "within the time budget" in err


def test_wrong_path_fails_every_case(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = smoke(capsys, api.replace("/api/v1/", "/api/v2/"))
    assert code == 1 and not any(c["passed"] for c in report["cases"])


@pytest.mark.parametrize("path", ["/v1/v1/predict", "/api/predict", "/api/v1/v1/predict"])
def test_a_url_without_exactly_one_version_is_a_usage_error(
    api: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The API's URL is /<stage>/v<api.version>/predict (stage "api"): the old stage-named-v1 URL (…/v1/v1/predict)
    # or a URL without the version is refused before any request, naming the expected shape.
    with pytest.raises(SystemExit) as exited:
        smoke(capsys, api.replace("/api/v1/predict", path))
    assert exited.value.code == 2
    assert "/<stage>/v<major>/predict" in capsys.readouterr().err


def test_unreachable_api_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = smoke(capsys, "http://127.0.0.1:9/api/v1/predict", "--timeout-s", "2")
    assert code == 1 and "cannot reach" in err
