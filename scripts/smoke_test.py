"""Smoke and load test of a deployed prediction API: the contract cases, then a bounded load test.

    python -m scripts.smoke_test --url https://<api>.execute-api.<region>.amazonaws.com/v1/v1/predict \
        --api-key KEY [--rows 5] [--requests 200 --concurrency 4 --p99-ms 1000 --time-budget-s 120]

Exit codes: 0 passed, 1 a case or the load test failed, 2 usage. The report (JSON) goes to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FEATURE_SCHEMA = Path(__file__).resolve().parents[1] / "model_container" / "contract" / "feature_schema.json"


def sample_rows(schema: dict[str, Any], count: int) -> list[list[float]]:
    """`count` plausible rows: each feature interpolated inside its training range."""
    features = schema["features"]
    return [
        [
            round(f["training_min"] + (f["training_max"] - f["training_min"]) * (i + 1) / (count + 1), 6)
            for f in features
        ]
        for i in range(count)
    ]


@dataclass
class Response:
    status: int
    body: bytes
    latency_ms: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class ApiClient:
    """One keep-alive connection to the API (one per load-test thread: http.client is not thread-safe)."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url {url!r} is not an http(s) URL")
        self.path = parts.path or "/"
        self.api_key, self.timeout = api_key, timeout
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._connect = lambda: connection(parts.hostname, parts.port, timeout=timeout)  # type: ignore[arg-type]
        self._connection = self._connect()

    def post(self, body: bytes, *, with_key: bool = True) -> Response:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if with_key and self.api_key:
            headers["x-api-key"] = self.api_key
        start = time.perf_counter()
        try:
            self._connection.request("POST", self.path, body=body, headers=headers)
            reply = self._connection.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException):
            # A dropped keep-alive connection must not poison the next request of this thread.
            self._connection.close()
            self._connection = self._connect()
            raise
        return Response(reply.status, data, (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._connection.close()


@dataclass
class CaseResult:
    name: str
    passed: bool
    status: int | None
    detail: str


def _predictions_ok(response: Response, rows: int) -> str | None:
    """None if the 200 body has one well-formed prediction per row, else what is wrong."""
    body = response.json()
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != rows:
        return f"expected {rows} prediction(s), got {response.body[:200]!r}"
    for p in predictions:
        if not (
            isinstance(p, dict)
            and p.get("label") in (0, 1)
            and isinstance(p.get("probability"), int | float)
            and 0 <= p["probability"] <= 1
        ):
            return f"malformed prediction {p!r}"
    return None


def run_cases(client: ApiClient, rows: list[list[float]]) -> list[CaseResult]:
    results = []
    for name, batch in (("single row", rows[:1]), (f"batch of {len(rows)}", rows)):
        response = client.post(json.dumps({"instances": batch}).encode())
        problem = f"status {response.status}" if response.status != 200 else _predictions_ok(response, len(batch))
        results.append(CaseResult(name, problem is None, response.status, problem or "ok"))
    response = client.post(b'{"instances": "not a list"}')
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    valid_error = isinstance(error, dict) and "code" in error and "message" in error
    results.append(
        CaseResult(
            "invalid body -> 400 JSON error",
            response.status == 400 and valid_error,
            response.status,
            "ok" if valid_error else f"body {response.body[:200]!r}",
        )
    )
    response = client.post(json.dumps({"instances": rows[:1]}).encode(), with_key=False)
    results.append(
        CaseResult(
            "missing API key -> 403",
            response.status == 403,
            response.status,
            "ok" if response.status == 403 else f"body {response.body[:200]!r}",
        )
    )
    return results


@dataclass
class LoadResult:
    requested: int
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    elapsed_s: float = 0.0
    stopped_on_budget: bool = False

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)  # nearest rank


def run_load(
    url: str, api_key: str, body: bytes, *, requests: int, concurrency: int, budget_s: float, timeout: float
) -> LoadResult:
    """Send exactly `requests` requests from `concurrency` threads, stopping early at the time budget."""
    result, lock = LoadResult(requests), threading.Lock()
    remaining = iter(range(requests))
    deadline = time.monotonic() + budget_s

    def worker() -> None:
        client = ApiClient(url, api_key, timeout)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if next(remaining, None) is None:
                        return
                try:
                    response = client.post(body)
                    outcome = "ok" if response.status == 200 else f"status {response.status}"
                except (OSError, http.client.HTTPException) as error:
                    response, outcome = None, type(error).__name__
                with lock:
                    result.completed += 1
                    if response is not None and outcome == "ok":
                        result.latencies_ms.append(response.latency_ms)
                    else:
                        result.errors[outcome] = result.errors.get(outcome, 0) + 1
        finally:
            client.close()

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    result.elapsed_s = round(time.monotonic() - start, 3)
    result.stopped_on_budget = result.completed < requests
    return result


def load_failures(load: LoadResult, p99_ms: float, max_error_rate: float) -> list[str]:
    failures = []
    if load.stopped_on_budget:
        failures.append(f"load: only {load.completed} of {load.requested} requests finished within the time budget")
    error_count = sum(load.errors.values())
    if load.completed and error_count / load.completed > max_error_rate:
        failures.append(
            f"load: {error_count} of {load.completed} requests failed {load.errors} (allowed rate {max_error_rate})"
        )
    p99 = load.percentile(0.99)
    if p99 is None or p99 > p99_ms:
        failures.append(f"load: p99 latency {p99} ms is over the threshold {p99_ms} ms")
    return failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True, help="the full predict URL (stage + /v1/predict)")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rows", type=int, default=5, help="rows in the batch case and in each load request")
    parser.add_argument("--requests", type=int, default=200, help="load-test requests (0 skips the load test)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--p99-ms", type=float, default=1000.0)
    parser.add_argument("--max-error-rate", type=float, default=0.01, help="allowed failed fraction under load")
    parser.add_argument("--time-budget-s", type=float, default=120.0, help="the load test stops after this")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per request")
    parser.add_argument("--feature-schema", type=Path, default=FEATURE_SCHEMA)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rows < 1 or args.requests < 0 or args.concurrency < 1:
        parser.error("--rows and --concurrency must be >= 1, --requests >= 0")
    rows = sample_rows(json.loads(args.feature_schema.read_text()), args.rows)
    try:
        client = ApiClient(args.url, args.api_key, args.timeout_s)
    except ValueError as error:
        parser.error(str(error))
    try:
        cases = run_cases(client, rows)
    except (OSError, http.client.HTTPException) as error:
        print(f"smoke_test: cannot reach {args.url}: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    failures = [f"case '{c.name}': status {c.status}, {c.detail}" for c in cases if not c.passed]
    report: dict[str, Any] = {"url": args.url, "cases": [asdict(c) for c in cases]}
    if args.requests and not failures:  # no load on an API that already breaks its contract
        load = run_load(
            args.url,
            args.api_key,
            json.dumps({"instances": rows}).encode(),
            requests=args.requests,
            concurrency=args.concurrency,
            budget_s=args.time_budget_s,
            timeout=args.timeout_s,
        )
        failures += load_failures(load, args.p99_ms, args.max_error_rate)
        report["load"] = {
            **{k: v for k, v in asdict(load).items() if k != "latencies_ms"},
            "p50_ms": load.percentile(0.5),
            "p99_ms": load.percentile(0.99),
            "max_ms": load.percentile(1.0),
            "p99_threshold_ms": args.p99_ms,
            "requests_per_s": round(load.completed / load.elapsed_s, 1) if load.elapsed_s else None,
        }
    report.update(passed=not failures, failures=failures)
    print(json.dumps(report, indent=2))
    for failure in failures:
        print(f"smoke_test: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
