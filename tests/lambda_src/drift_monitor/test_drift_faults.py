"""The drift run under single AWS faults (tests/fault_injection.py): issue 14, "fault-injection suite", drift run.

The scenario is one scheduled run of the drift Lambda over a window whose traffic has drifted (so it writes two
reports, publishes metrics and sends one event), with ground truth, under its decision lock. It runs once fault-free
to record its AWS calls, then once per call k with call k failing (throttling, 5xx, a conditional-check failure on
the lock's conditional writes, NoSuchKey on any GetObject), followed by Lambda's retry of a failed invocation (same
request id: "How Lambda handles errors and retries with asynchronous invocation"). Invariants after the step:
- no attempt fails with a raw ClientError: a failure is DriftRunFailed, naming the window and the error code, caused
  by the injected error (EVENTS.md, "When a run fails");
- the retry completes (nothing unhandled) and its reports are the fault-free run's, statistic for statistic (the
  reservoirs are seeded with the window and version); one report object per version and window;
- the drift event is sent exactly once over all attempts;
- the decision lock is not left held;
- NoSuchKey is data, not a failure: the first attempt completes and the report counts what was missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from drift_engine import handler as drift_handler
from drift_engine.handler import DriftRunFailed
from drift_engine.job import AwsClients
from drift_test_data import FEATURES, capture_line, metadata, sample_features, to_csv

from tests.fault_injection import (
    CONDITIONAL,
    INTERNAL,
    NO_SUCH_KEY,
    THROTTLE,
    FaultCase,
    Scenario,
    Step,
    Trace,
    count_pairs,
    fault_cases,
    patched_attr,
    patched_env,
    recorded_calls,
    run_scenario,
)
from tests.lambda_src.drift_monitor.test_handler_integration import HOUR, SCHEDULED, FakeContext, load_handler
from tests.release_table import create_release_table

REGION = "us-east-1"
LOCKS, LOCK_NAME, RELEASES = "decision-locks", "churn-drift-monitor", "churn-releases"
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "ENDPOINT_NAME": "churn-ep", "VARIANT_NAME": "AllTraffic",
    "CAPTURE_BUCKET": "capture", "CAPTURE_PREFIX": "datacapture", "BASELINE_BUCKET": "models",
    "REPORT_BUCKET": "monitoring-reports", "METRICS_NAMESPACE": "Test/Drift", "EVENT_BUS_NAME": "default",
    "GROUND_TRUTH_BUCKET": "labels", "GROUND_TRUTH_PREFIX": "ground-truth", "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    "DECISION_LOCK_TABLE": LOCKS, "DECISION_LOCK_NAME": LOCK_NAME, "DECISION_LOCK_LEASE_SECONDS": "930",
    "RELEASES_TABLE": RELEASES,
}  # fmt: skip
REPORTS = {f"drift-reports/churn-ep/{folder}/{HOUR}/report.json" for folder in ("1.0.0", "_summary")}
# The drift job has one path for every AWS error but NoSuchKey and the lock's condition (DriftRunFailed, then the
# retry): throttling and a 5xx stand for the error codes; `unavailable` (another 5xx) adds pairs, not paths.
KINDS = (THROTTLE, INTERNAL, CONDITIONAL, NO_SUCH_KEY)


MODEL_HASH = hashlib.sha256(b"the served build").hexdigest()  # the live release's build (EVENTS.md "Which baseline")


def _objects() -> dict[tuple[str, str], str]:
    rng = np.random.default_rng(14)
    baseline = sample_features(rng, 300)
    document = {**metadata("1.0.0", FEATURES, baseline), "content_sha256": MODEL_HASH}
    root = f"baselines/{MODEL_HASH}/"
    objects = {
        ("models", root + "metadata.json"): json.dumps(document),
        ("models", root + "baseline.csv"): to_csv(baseline),
        ("models", root + "baseline_predictions.csv"): to_csv(rng.beta(2, 2, size=(300, 1))),
    }
    values, scores = sample_features(rng, 120, shift={0: 3.0}), rng.beta(2, 2, size=120)
    lines = [capture_line(values[i : i + 4].tolist(), scores[i : i + 4].tolist(), "1.0.0", event_id=f"e{i}")
             for i in range(0, 120, 4)]  # fmt: skip
    for name, part in (("a", lines[:15]), ("b", lines[15:])):
        objects[("capture", f"datacapture/churn-ep/AllTraffic/{HOUR}/{name}.jsonl")] = "\n".join(part) + "\n"
    labels = [json.dumps({"inferenceId": f"e{i}", "labels": [int(s >= 0.5) for s in scores[i : i + 4]]})
              for i in range(0, 120, 4)]  # fmt: skip
    objects[("labels", f"ground-truth/{HOUR}/labels.jsonl")] = "\n".join(labels) + "\n"
    return objects


OBJECTS = _objects()


class RecordingEvents:
    """EventBridge through moto; keeps the entries of each PutEvents that succeeded."""

    def __init__(self, client: Any) -> None:
        self.client, self.sent = client, []

    def put_events(self, **kwargs: Any) -> Any:
        response = self.client.put_events(**kwargs)
        self.sent.extend(kwargs["Entries"])
        return response


@dataclass
class World:
    clients: AwsClients
    events: RecordingEvents
    handler: Any
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read_reports(self) -> dict[str, dict[str, Any]]:
        s3 = self.clients.s3
        listed = s3.list_objects_v2(Bucket="monitoring-reports").get("Contents", [])
        return {o["Key"]: json.loads(s3.get_object(Bucket="monitoring-reports", Key=o["Key"])["Body"].read())
                for o in listed}  # fmt: skip

    def lock_item(self) -> Any:
        key = {"pk": {"S": f"LOCK#{LOCK_NAME}"}, "sk": {"S": "LOCK"}}
        return self.clients.dynamodb.get_item(TableName=LOCKS, Key=key, ConsistentRead=True).get("Item")


_CURRENT: dict[str, World] = {}


@functools.cache
def _boto(kind: str, service: str) -> Any:
    return boto3.resource(service) if kind == "resource" else boto3.client(service)


def provision() -> None:
    s3 = _boto("client", "s3")
    for bucket in ("capture", "models", "monitoring-reports", "labels"):
        s3.create_bucket(Bucket=bucket)
    _boto("client", "dynamodb").create_table(
        TableName=LOCKS, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])  # fmt: skip
    releases = create_release_table(_boto("resource", "dynamodb"), RELEASES)
    releases.put_item(Item={"pk": "churn-ep", "sk": "release#cfg-1", "status_key": "churn-ep#live",
                            "status_changed_at": "2026-11-01T10:00:00Z", "model_version": "1.0.0",
                            "model_hash": MODEL_HASH[:16]})  # fmt: skip


def setup() -> World:
    s3 = _boto("client", "s3")
    # Uploaded per run: moto's restored snapshot of S3 keeps an object's checksum but not its body.
    for (bucket, key), body in OBJECTS.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    events = RecordingEvents(_boto("client", "events"))
    clients = AwsClients(s3=s3, cloudwatch=_boto("client", "cloudwatch"), events=events,
                         releases=_boto("resource", "dynamodb").Table(RELEASES),
                         dynamodb=_boto("client", "dynamodb"))  # fmt: skip
    world = World(clients, events, load_handler())
    _CURRENT["world"] = world
    return world


@contextmanager
def environment() -> Iterator[None]:
    from drift_engine import baseline_store

    baseline_store.clear_cache()  # each run reads its baselines (and meets its faults) afresh
    with patched_env(ENVIRONMENT), patched_attr(drift_handler, "_clients", lambda: _CURRENT["world"].clients):
        yield
    baseline_store.clear_cache()


@functools.cache
def fault_free_reports() -> dict[str, dict[str, Any]]:
    """The reports of a run without faults (never from inside another run: each run restores moto's state)."""
    trace = run_scenario(DRIFT_RUN)
    return dict(trace.final("scheduled run")["reports"])


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in ("generated_at",)}


def check(world: World, trace: Trace) -> None:
    (run,) = trace.steps
    for attempt in run.attempts:
        if attempt.error is not None:
            assert isinstance(attempt.error, DriftRunFailed), f"a raw {attempt.error!r} escaped the handler"
            assert isinstance(attempt.error.__cause__, ClientError)
            cause = attempt.error.__cause__
            assert f"{cause.operation_name}: {cause.response['Error']['Code']}" in str(attempt.error)
    assert trace.unhandled == [], "Lambda's retry did not complete the run"
    assert world.lock_item() is None, "the decision lock was left held"
    reports = world.reports = world.read_reports()
    assert set(reports) == REPORTS, sorted(reports)
    run.final.result = {**run.final.result, "reports": reports}  # for fault_free_reports
    fault = trace.fault
    if fault is None:
        assert len(world.events.sent) == 1 and reports[max(REPORTS)]["drift_detected"] is True
        version = reports[min(REPORTS)]
        assert (version["status"], version["baseline"]["served_content_hash"]) == ("drift_detected", MODEL_HASH[:16])
        assert version["ground_truth"]["joined_labels"] == 120
        return
    if fault.kind is NO_SUCH_KEY:
        assert len(run.attempts) == 1, "a vanished object is data, not a failed run"
        assert len(world.events.sent) <= 1
        return
    assert len(world.events.sent) == 1, f"{len(world.events.sent)} drift events for one window"
    expected = fault_free_reports()
    for key, document in reports.items():
        assert _comparable(document) == _comparable(expected[key]), key


DRIFT_RUN: Scenario[World] = Scenario(
    name="drift_run",
    steps=(Step("scheduled run", lambda world: world.handler(SCHEDULED, FakeContext(aws_request_id="req-1"))),),
    setup=setup,
    check=check,
    provision=provision,
    environment=environment,
    faults=KINDS,
)


@pytest.mark.parametrize("case", fault_cases([DRIFT_RUN]))
def test_a_single_aws_fault_in_a_drift_run(case: FaultCase) -> None:
    fault_free_reports()  # computed (once) before this run: check() compares with it
    trace = run_scenario(case.scenario, case.fault)
    assert trace.fired is not None


def test_a_vanished_capture_object_is_counted_in_the_report() -> None:
    calls = [str(call) for call in recorded_calls(DRIFT_RUN)]
    first_capture_read = calls.index("s3.GetObject", calls.index("s3.ListObjectsV2", 2))
    case = next(c for c in (p.values[0] for p in fault_cases([DRIFT_RUN]))
                if c.fault.call == first_capture_read and c.fault.kind is NO_SUCH_KEY)  # fmt: skip
    world_reports = run_scenario(DRIFT_RUN, case.fault).steps[0].final.result["reports"]
    summary = world_reports[f"drift-reports/churn-ep/_summary/{HOUR}/report.json"]
    assert summary["capture"]["objects"]["missing"] == 1
    assert summary["rows_total"] == 60  # the other object's 15 records of 4 rows


def test_the_scenario_covers_every_step_of_the_run() -> None:
    calls = {str(call) for call in recorded_calls(DRIFT_RUN)}
    assert {"dynamodb.PutItem", "dynamodb.DeleteItem", "dynamodb.Query", "s3.ListObjectsV2", "s3.GetObject",
            "s3.PutObject", "cloudwatch.PutMetricData", "events.PutEvents"} <= calls  # fmt: skip
    assert count_pairs([DRIFT_RUN]) >= 35
