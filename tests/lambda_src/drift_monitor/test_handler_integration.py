"""End to end with moto: S3 capture + baselines in, report/metrics/event out."""

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from drift_engine import handler as drift_handler
from drift_engine.job import AwsClients
from drift_test_data import FEATURES, WIDTH, capture_line, metadata, sample_features, to_csv
from moto import mock_aws

from tests.release_table import create_release_table

APP = Path(__file__).resolve().parents[3] / "lambda_src" / "drift_monitor" / "app.py"
NAMESPACE = "Test/Drift"
HOUR = "2026/11/25/12"
SCHEDULED = {"time": "2026-11-25T13:04:00Z", "source": "aws.events", "detail-type": "Scheduled Event"}
LOCKS, LOCK_NAME, RELEASES = "decision-locks", "churn-drift-monitor", "churn-releases"


@dataclass
class FakeContext:
    function_name: str = "drift-monitor"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:drift-monitor"
    aws_request_id: str = "req-1"


def load_handler() -> Any:
    """Load app.py the way Lambda does (by file in the code root), under a unique module name."""
    spec = importlib.util.spec_from_file_location("drift_monitor_app", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


class RecordingEvents:
    """Forwards PutEvents to moto (validates the request) and keeps the entries.

    moto only routes events to rule targets with the optional `jsonpath_ng` package, which is
    not a dev dependency here, so the test inspects the entries the handler sent instead.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.entries: list[dict[str, Any]] = []

    def put_events(self, **kwargs: Any) -> Any:
        self.entries.extend(kwargs["Entries"])
        return self.client.put_events(**kwargs)


@dataclass
class Platform:
    s3: Any
    cloudwatch: Any
    events: RecordingEvents
    rng: np.random.Generator
    dynamodb: Any = None  # the decision lock's client
    releases: Any = None  # the release history table (a boto3 Table)

    def add_baseline(self, version: str, names: list[str], rows: int = 500) -> None:
        values = sample_features(self.rng, rows)[:, : len(names)]
        root = f"baselines/{version}/"
        self.s3.put_object(
            Bucket="models", Key=root + "metadata.json", Body=json.dumps(metadata(version, names, values))
        )
        self.s3.put_object(Bucket="models", Key=root + "baseline.csv", Body=to_csv(values))
        scores = self.rng.beta(2, 2, size=(rows, 1))
        self.s3.put_object(Bucket="models", Key=root + "baseline_predictions.csv", Body=to_csv(scores))

    def add_capture(self, hour: str, name: str, lines: list[str]) -> None:
        key = f"datacapture/churn-ep/AllTraffic/{hour}/{name}.jsonl"
        self.s3.put_object(Bucket="capture", Key=key, Body="\n".join(lines) + "\n")

    def report(self, folder: str) -> dict[str, Any]:
        key = f"drift-reports/churn-ep/{folder}/{HOUR}/report.json"
        return json.loads(self.s3.get_object(Bucket="monitoring-reports", Key=key)["Body"].read())

    def drift_events(self) -> list[dict[str, Any]]:
        return [{**entry, "Detail": json.loads(entry["Detail"])} for entry in self.events.entries]

    def metric(self, name: str, **dims: str) -> list[float]:
        response = self.cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": NAMESPACE,
                            "MetricName": name,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                        },
                        "Period": 3600,
                        "Stat": "Maximum",
                    },
                }
            ],
            StartTime=datetime(2026, 11, 25, 11, tzinfo=UTC),
            EndTime=datetime(2026, 11, 25, 14, tzinfo=UTC),
        )
        return list(response["MetricDataResults"][0]["Values"])


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    env = {
        "ENDPOINT_NAME": "churn-ep",
        "VARIANT_NAME": "AllTraffic",
        "CAPTURE_BUCKET": "capture",
        "CAPTURE_PREFIX": "datacapture",
        "BASELINE_BUCKET": "models",
        "REPORT_BUCKET": "monitoring-reports",
        "METRICS_NAMESPACE": NAMESPACE,
        "EVENT_BUS_NAME": "default",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        # As ml_constructs/decision_lock.py DecisionLockTable.attach and ml_constructs/drift_monitor.py set them.
        "DECISION_LOCK_TABLE": LOCKS,
        "DECISION_LOCK_NAME": LOCK_NAME,
        "DECISION_LOCK_LEASE_SECONDS": "930",
        "RELEASES_TABLE": RELEASES,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("capture", "models", "monitoring-reports", "labels"):
            s3.create_bucket(Bucket=bucket)
        cloudwatch = boto3.client("cloudwatch")
        events = RecordingEvents(boto3.client("events"))
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=LOCKS, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])  # fmt: skip
        releases = create_release_table(boto3.resource("dynamodb"), RELEASES)
        clients = AwsClients(s3=s3, cloudwatch=cloudwatch, events=events, releases=releases, dynamodb=dynamodb)
        monkeypatch.setattr(drift_handler, "_clients", lambda: clients)
        yield Platform(s3, cloudwatch, events, np.random.default_rng(2026), dynamodb, releases)


def _traffic(platform: Platform, rows: int, version: str, shift: dict[int, float] | None = None) -> list[str]:
    """Capture lines of 5 instances each, cycling through the request encodings."""
    values = sample_features(platform.rng, rows, shift)
    scores = platform.rng.beta(2, 2, size=rows)
    encodings = ["JSON", "CSV", "BASE64-JSON", "BASE64-CSV"]
    return [
        capture_line(
            values[start : start + 5].tolist(),
            scores[start : start + 5].tolist(),
            version,
            encoding=encodings[(start // 5) % 4],
            event_id=f"{version}-{start}",
        )
        for start in range(0, rows, 5)
    ]


def test_shifted_feature_is_reported_published_and_announced(platform: Platform) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_baseline("2.0.0", FEATURES[:-1])  # schema changed: last feature dropped
    normal = _traffic(platform, 200, "1.0.0")
    shifted = _traffic(platform, 200, "1.0.0", shift={0: 3.0})
    v2_values = sample_features(platform.rng, 100)[:, :-1]
    v2_scores = platform.rng.beta(2, 2, size=100).tolist()
    v2 = [
        capture_line([dict(zip(FEATURES[:-1], row, strict=True))], [score], "2.0.0", event_id=f"v2-{i}")
        for i, (row, score) in enumerate(zip(v2_values.tolist(), v2_scores, strict=True))
    ]
    platform.add_capture(HOUR, "a", [*normal[:20], "not json at all", *shifted[:20]])
    platform.add_capture(HOUR, "b", normal[20:] + shifted[20:] + v2)
    platform.add_capture("2026/11/25/11", "old", _traffic(platform, 50, "1.0.0", shift={1: 5.0}))

    result = load_handler()(SCHEDULED, FakeContext())

    assert result["drift_detected"] is True
    assert result["events_sent"] == 1
    report = platform.report("1.0.0")
    assert report["status"] == "drift_detected"
    assert report["window"] == {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"}
    assert report["rows_analysed"] == 400
    assert report["drifted_features"] == [FEATURES[0]]
    by_name = {feature["feature"]: feature for feature in report["features"]}
    assert by_name[FEATURES[0]]["psi"] > 0.25
    assert by_name[FEATURES[0]]["out_of_range_rate"] > 0.1
    assert by_name[FEATURES[1]]["status"] in ("ok", "warn")
    assert report["prediction"]["status"] in ("ok", "warn")
    assert report["capture"]["malformed_records"] == 1
    assert report["capture"]["malformed_samples"][0]["source"].endswith("a.jsonl:21")
    assert report["baseline"]["content_hash"] == "sha256:1.0.0"

    v2_report = platform.report("2.0.0")
    assert v2_report["status"] == "no_drift"
    assert v2_report["rows_analysed"] == 100
    assert len(v2_report["features"]) == WIDTH - 1

    summary = platform.report("_summary")
    assert summary["rows_total"] == 500
    assert summary["versions"]["1.0.0"]["drifted_features"] == [FEATURES[0]]

    assert platform.metric("RowsAnalysed", EndpointName="churn-ep") == [500.0]
    assert platform.metric("MalformedRecords", EndpointName="churn-ep") == [1.0]
    assert platform.metric("FeaturesDrifted", EndpointName="churn-ep", ModelVersion="1.0.0") == [1.0]
    (psi,) = platform.metric("PSI", EndpointName="churn-ep", ModelVersion="1.0.0", Feature=FEATURES[0])
    assert psi == pytest.approx(by_name[FEATURES[0]]["psi"])
    listed = platform.cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE, MetricName="KSStatistic")
    assert sum(len(page["Metrics"]) for page in listed) == WIDTH + WIDTH - 1

    (event,) = platform.drift_events()
    assert (event["Source"], event["DetailType"]) == ("ml-platform.drift-monitor", "Model Drift Detected")
    assert event["EventBusName"] == "default"
    detail = event["Detail"]
    assert detail["modelVersion"] == "1.0.0"
    assert [f["feature"] for f in detail["driftedFeatures"]] == [FEATURES[0]]
    assert detail["reportUri"] == f"s3://monitoring-reports/drift-reports/churn-ep/1.0.0/{HOUR}/report.json"


def test_empty_window_reports_no_data_and_publishes_zero_rows(platform: Platform) -> None:
    result = load_handler()(SCHEDULED, FakeContext())
    assert (result["status"], result["rows_total"], result["events_sent"]) == ("no_data", 0, 0)
    summary = platform.report("_summary")
    assert summary["status"] == "no_data"
    assert summary["versions"] == {}
    assert platform.metric("RowsAnalysed", EndpointName="churn-ep") == [0.0]
    assert platform.drift_events() == []


def test_unknown_version_is_reported_and_skipped(platform: Platform) -> None:
    platform.add_capture(HOUR, "a", _traffic(platform, 60, "9.9.9", shift={0: 5.0}))
    result = load_handler()(SCHEDULED, FakeContext())
    assert result["drift_detected"] is False
    summary = platform.report("_summary")
    assert summary["versions_without_baseline"] == ["9.9.9"]
    assert platform.report("9.9.9")["status"] == "no_baseline"
    assert platform.metric("RowsWithoutBaseline", EndpointName="churn-ep", ModelVersion="9.9.9") == [60.0]
    assert platform.drift_events() == []


def test_ground_truth_join_publishes_accuracy_and_auc(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUND_TRUTH_BUCKET", "labels")
    monkeypatch.setenv("GROUND_TRUTH_PREFIX", "ground-truth")
    platform.add_baseline("1.0.0", FEATURES)
    values = sample_features(platform.rng, 80)
    scores = platform.rng.uniform(0, 1, 80)
    truth = (scores >= 0.5).astype(int)
    truth[:10] = 1 - truth[:10]  # ten wrong predictions -> accuracy 70/80
    lines = [
        capture_line([row], [score], "1.0.0", event_id=f"e{i}", inference_id=f"inf-{i}")
        for i, (row, score) in enumerate(zip(values.tolist(), scores.tolist(), strict=True))
    ]
    platform.add_capture(HOUR, "a", lines)
    labels = [json.dumps({"inferenceId": f"inf-{i}", "label": int(y)}) for i, y in enumerate(truth[:40])]
    labels += [
        json.dumps({"groundTruthData": {"data": str(y), "encoding": "CSV"}, "eventMetadata": {"eventId": f"inf-{i}"}})
        for i, y in enumerate(truth[40:], start=40)
    ]
    platform.s3.put_object(Bucket="labels", Key=f"ground-truth/{HOUR}/labels.jsonl", Body="\n".join(labels))

    load_handler()(SCHEDULED, FakeContext())

    quality = platform.report("1.0.0")["ground_truth"]
    pos, neg = scores[truth == 1], scores[truth == 0]
    expected_auc = float(np.mean(pos[:, None] > neg[None, :]))
    assert quality["joined_labels"] == 80
    assert quality["accuracy"] == pytest.approx(70 / 80)
    assert quality["roc_auc"] == pytest.approx(expected_auc, abs=1e-6)
    dims = {"EndpointName": "churn-ep", "ModelVersion": "1.0.0"}
    assert platform.metric("Accuracy", **dims) == [pytest.approx(70 / 80)]
    assert platform.metric("GroundTruthLabels", **dims) == [80.0]
    assert platform.metric("RocAuc", **dims) == [pytest.approx(expected_auc, abs=1e-6)]


def test_the_container_task_runs_the_same_job_for_an_explicit_window(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    from drift_engine import task

    platform.add_baseline("1.0.0", FEATURES)
    platform.add_capture(HOUR, "a", _traffic(platform, 200, "1.0.0", shift={0: 3.0}))
    assert task.main(["--window-start", "2026-11-25T12:30:00Z"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["event"], summary["drift_detected"], summary["events_sent"]) == ("drift_run_finished", True, 1)
    report = platform.report("1.0.0")
    assert report["window"] == {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"}
    assert report["drifted_features"] == [FEATURES[0]]


def test_a_failed_task_run_exits_1_and_logs_why(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from drift_engine import task

    monkeypatch.delenv("CAPTURE_BUCKET")
    assert task.main([]) == 1
    failure = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert failure["event"] == "drift_run_failed" and "CAPTURE_BUCKET" in failure["error"] + failure["traceback"]
