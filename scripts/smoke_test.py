"""Smoke and load test of a deployed prediction API: the contract cases, then a bounded, paced load test.

    python -m scripts.smoke_test --url https://<api>.execute-api.<region>.amazonaws.com/api/v1/predict \
        --api-key KEY [--card model_container/dist/metadata.json] [--rows 5] \
        [--requests 200 --concurrency 4 --rate 30 --p99-ms 1000 --time-budget-s 120]

The model card (the metadata.json the pipeline's build wrote) gives the sample rows (inside its features' training
ranges) and what a prediction must be for its task: binary a class index and a probability in [0, 1]; multiclass a
class index and one probability per class name of the card, summing to 1; regression a finite value.

Use the pipeline's test key (<prefix>-api-pipeline-tests): the gateway marks that key's requests as test traffic,
which the drift job leaves out (README "Test traffic"). --rate paces the load below that key's usage plan; a 429
(throttled) is retried with the AWS SDKs' backoff rather than counted as a failure, unless it says the daily quota
is used up. Exit codes: 0 passed, 1 a case or the load test failed, 2 usage. The report (JSON) goes to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from model_container.card import BINARY, REGRESSION, CardError, ModelCard

MODEL_CARD = Path(__file__).resolve().parents[1] / "model_container" / "dist" / "metadata.json"
# The container rounds each probability to 6 decimals: k of them sum to 1 within k * 5e-7, plus float32 error.
PROBABILITY_SUM_TOLERANCE = 1e-4
# /<stage>/v<major>/predict (ml_constructs/prediction_api.py public_url), or /v<major>/predict behind a custom domain's
# base path mapping; the version is said once: a stage named like a version (…/v1/v1/predict) is the old double URL.
PREDICT_PATH = re.compile(r"^(/(?!v\d+/)[^/]+)*/v\d+/predict$")


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


def load_body(rows: list[list[float]]) -> bytes:
    """The body of every load-test request: all sample rows in one batch."""
    return json.dumps({"instances": rows}).encode()


@dataclass(frozen=True)
class Case:
    """One contract case: what is sent, and whether it gets past the gateway to the model (and its data capture)."""

    name: str
    body: bytes
    with_key: bool
    reaches_model: bool


def contract_cases(rows: list[list[float]]) -> list[Case]:
    return [
        Case("single row", json.dumps({"instances": rows[:1]}).encode(), True, True),
        Case(f"batch of {len(rows)}", json.dumps({"instances": rows}).encode(), True, True),
        # Refused by the request validator and by the API key check: neither reaches the endpoint.
        Case("invalid body -> 400 JSON error", b'{"instances": "not a list"}', True, False),
        Case("missing API key -> 403", json.dumps({"instances": rows[:1]}).encode(), False, False),
    ]


def model_bodies(rows: list[list[float]], requests: int) -> list[bytes]:
    """Every body a run sends that reaches the model, in order: what the endpoint's data capture records of it."""
    return [case.body for case in contract_cases(rows) if case.reaches_model] + [load_body(rows)] * requests


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


class Pacer:
    """Spaces request starts at least 1/rate seconds apart across all threads. A slow stretch never turns into a
    catch-up burst: a late request takes the next free slot from now, not the ones it missed."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            slot = max(time.monotonic(), self._next)
            self._next = slot + self.interval
        time.sleep(max(0.0, slot - time.monotonic()))


# API Gateway answers 429 when a key goes over its plan's rate ("Clients may receive 429 Too Many Requests error
# responses ... the client can resubmit the failed requests in a way that is rate limiting": "Throttle requests to
# your REST APIs for better throughput in API Gateway"); the integration maps SageMaker's throttling to 429 too.
# The retry follows the AWS SDKs' standard mode ("Retry behavior", AWS SDKs and Tools Reference Guide): 3 attempts,
# delay min(b * 2^i, 20 s) with b uniform in [0, 1]. A used-up daily quota (429 quota_exceeded) is not retried.
MAX_BACKOFF_S = 20.0
DEFAULT_ATTEMPTS = 3


def backoff_s(retry: int, rand: Callable[[], float] = random.random) -> float:
    return min(rand() * 2**retry, MAX_BACKOFF_S)


def _retryable(response: Response) -> bool:
    if response.status != 429:
        return False
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    return not (isinstance(error, dict) and error.get("code") == "quota_exceeded")


def post_paced(
    client: ApiClient, body: bytes, pacer: Pacer, attempts: int, *, with_key: bool = True
) -> tuple[Response, int]:
    """Send with pacing, retrying throttled answers; returns the last response and how many 429s were retried."""
    retried = 0
    while True:
        pacer.wait()
        response = client.post(body, with_key=with_key)
        if retried + 1 >= attempts or not _retryable(response):
            return response, retried
        time.sleep(backoff_s(retried))
        retried += 1


@dataclass
class CaseResult:
    name: str
    passed: bool
    status: int | None
    detail: str


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _probability(value: Any) -> bool:
    return _number(value) and 0 <= value <= 1


def _class_problem(p: dict[str, Any], card: ModelCard) -> str | None:
    """What is wrong with a classifier's prediction of `card`'s task, or None."""
    label = p.get("label")
    if not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < card.classes):
        return f"label {label!r} is not a class index 0..{card.classes - 1}"
    if card.task == BINARY:
        return None if _probability(p.get("probability")) else f"probability {p.get('probability')!r} not in [0, 1]"
    probabilities = p.get("probabilities")
    if not isinstance(probabilities, dict) or sorted(probabilities) != sorted(card.label_names):
        return f"probabilities {probabilities!r} are not one per class of the card ({', '.join(card.label_names)})"
    if not all(_probability(v) for v in probabilities.values()):
        return f"probabilities {probabilities!r} are not all in [0, 1]"
    if abs(sum(probabilities.values()) - 1) > PROBABILITY_SUM_TOLERANCE:
        return f"probabilities sum to {sum(probabilities.values())}, not 1"
    return None


def prediction_problem(p: Any, card: ModelCard) -> str | None:
    """None if `p` is one prediction of the card's task (common serving contract), else what is wrong."""
    if not isinstance(p, dict):
        return "not an object"
    if not isinstance(p.get("model_version"), str) or not p["model_version"]:
        return "model_version is not a non-empty string"
    if card.task == REGRESSION:
        return None if _number(p.get("value")) else f"value {p.get('value')!r} is not a finite number"
    return _class_problem(p, card)


def _predictions_ok(response: Response, rows: int, card: ModelCard) -> str | None:
    """None if the 200 body has one well-formed prediction per row, else what is wrong."""
    body = response.json()
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != rows:
        return f"expected {rows} prediction(s), got {response.body[:200]!r}"
    for index, p in enumerate(predictions):
        problem = prediction_problem(p, card)
        if problem:
            return f"malformed {card.task} prediction {index} ({problem}): {p!r}"[:400]
    return None


def _case_result(case: Case, response: Response, rows: int, card: ModelCard) -> CaseResult:
    if case.reaches_model:
        problem = f"status {response.status}" if response.status != 200 else _predictions_ok(response, rows, card)
        return CaseResult(case.name, problem is None, response.status, problem or "ok")
    if not case.with_key:
        ok = response.status == 403
        return CaseResult(case.name, ok, response.status, "ok" if ok else f"body {response.body[:200]!r}")
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    valid_error = isinstance(error, dict) and "code" in error and "message" in error
    return CaseResult(
        case.name,
        response.status == 400 and valid_error,
        response.status,
        "ok" if valid_error else f"body {response.body[:200]!r}",
    )


def run_cases(
    client: ApiClient,
    card: ModelCard,
    rows: list[list[float]],
    pacer: Pacer | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> list[CaseResult]:
    results = []
    for case in contract_cases(rows):
        response, _ = post_paced(client, case.body, pacer or Pacer(None), attempts, with_key=case.with_key)
        rows_sent = len(json.loads(case.body)["instances"]) if case.reaches_model else 0
        results.append(_case_result(case, response, rows_sent, card))
    return results


@dataclass
class LoadResult:
    requested: int
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    elapsed_s: float = 0.0
    stopped_on_budget: bool = False
    throttled_retries: int = 0  # 429 answers that were retried (not failures unless the retries ran out)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)  # nearest rank


def run_load(
    url: str,
    api_key: str,
    body: bytes,
    *,
    requests: int,
    concurrency: int,
    budget_s: float,
    timeout: float,
    rate: float | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> LoadResult:
    """Send exactly `requests` requests from `concurrency` threads, at most `rate` per second (retries included),
    stopping early at the time budget."""
    result, lock = LoadResult(requests), threading.Lock()
    remaining = iter(range(requests))
    deadline = time.monotonic() + budget_s
    pacer = Pacer(rate)

    def worker() -> None:
        client = ApiClient(url, api_key, timeout)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if next(remaining, None) is None:
                        return
                retried = 0
                try:
                    response, retried = post_paced(client, body, pacer, attempts)
                    outcome = "ok" if response.status == 200 else f"status {response.status}"
                except (OSError, http.client.HTTPException) as error:
                    response, outcome = None, type(error).__name__
                with lock:
                    result.completed += 1
                    result.throttled_retries += retried
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


def default_budget_s(requests: int, rate: float | None) -> float:
    """120 s, or more for a paced run: its requests need requests / rate seconds by design."""
    return max(120.0, 1.5 * requests / rate + 30) if rate else 120.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True, help="the full predict URL (stage + /v<api.version>/predict)")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rows", type=int, default=5, help="rows in the batch case and in each load request")
    parser.add_argument("--requests", type=int, default=200, help="load-test requests (0 skips the load test)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rate", type=float, default=None, help="load-test requests per second, retries included (default: unpaced)"
    )
    parser.add_argument(
        "--max-attempts", type=int, default=DEFAULT_ATTEMPTS, help="attempts per request when throttled (429)"
    )
    parser.add_argument("--p99-ms", type=float, default=1000.0)
    parser.add_argument("--max-error-rate", type=float, default=0.01, help="allowed failed fraction under load")
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="the load test stops after this (default: 120 s, or 1.5 x requests / rate + 30 s when paced if longer)",
    )
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per request")
    parser.add_argument(
        "--card", type=Path, default=MODEL_CARD, help="the model card of the deployed build (metadata.json or its dir)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rows < 1 or args.requests < 0 or args.concurrency < 1 or args.max_attempts < 1:
        parser.error("--rows, --concurrency and --max-attempts must be >= 1, --requests >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    budget_s = args.time_budget_s if args.time_budget_s is not None else default_budget_s(args.requests, args.rate)
    try:
        card = ModelCard.load(args.card)
    except CardError as error:
        parser.error(f"--card: {error} (pass --card with the build's metadata.json, or run make model)")
    rows = sample_rows(card.feature_schema, args.rows)
    # The public API's path only: the latency gate drives the same client against the container's /invocations.
    if not PREDICT_PATH.match(urlsplit(args.url).path):
        parser.error(
            f"--url path {urlsplit(args.url).path!r} is not /<stage>/v<major>/predict with the version once "
            "(e.g. /api/v1/predict; the major is api.version in cdk.json)"
        )
    try:
        client = ApiClient(args.url, args.api_key, args.timeout_s)
    except ValueError as error:
        parser.error(str(error))
    try:
        cases = run_cases(client, card, rows, Pacer(args.rate), args.max_attempts)
    except (OSError, http.client.HTTPException) as error:
        print(f"smoke_test: cannot reach {args.url}: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    failures = [f"case '{c.name}': status {c.status}, {c.detail}" for c in cases if not c.passed]
    report: dict[str, Any] = {
        "url": args.url,
        "model": {"name": card.name, "version": card.version, "task": card.task},
        "cases": [asdict(c) for c in cases],
    }
    if args.requests and not failures:  # no load on an API that already breaks its contract
        load = run_load(
            args.url,
            args.api_key,
            load_body(rows),
            requests=args.requests,
            concurrency=args.concurrency,
            budget_s=budget_s,
            timeout=args.timeout_s,
            rate=args.rate,
            attempts=args.max_attempts,
        )
        failures += load_failures(load, args.p99_ms, args.max_error_rate)
        report["load"] = {
            **{k: v for k, v in asdict(load).items() if k != "latencies_ms"},
            "p50_ms": load.percentile(0.5),
            "p99_ms": load.percentile(0.99),
            "max_ms": load.percentile(1.0),
            "p99_threshold_ms": args.p99_ms,
            "rate_limit_per_s": args.rate,
            "time_budget_s": budget_s,
            "requests_per_s": round(load.completed / load.elapsed_s, 1) if load.elapsed_s else None,
        }
    report.update(passed=not failures, failures=failures)
    print(json.dumps(report, indent=2))
    for failure in failures:
        print(f"smoke_test: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
