import json
from datetime import UTC, datetime
from typing import Any

import pytest
from drift_engine.capture_records import CaptureBatch
from drift_engine.drift_events import EventPublishError, publish_drift_events
from drift_engine.feature_drift import ALARM, INSUFFICIENT, OK, FeatureDrift
from drift_engine.metrics_publisher import endpoint_metrics, publish, version_metrics
from drift_engine.reports import VersionReport
from drift_engine.settings import Settings
from drift_engine.window import resolve_window

WHEN = datetime(2026, 11, 25, 12, tzinfo=UTC)
SETTINGS = Settings.from_env(
    {"ENDPOINT_NAME": "ep", "CAPTURE_BUCKET": "c", "BASELINE_BUCKET": "b", "REPORT_BUCKET": "r"}
)
WINDOW = resolve_window({"window_start": "2026-11-25T12:00:00Z"}, 1)


class Recorder:
    def __init__(self, failed: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failed = failed

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        entries = [{"ErrorCode": "Throttled"}] * self.failed + [{"EventId": "x"}] * (
            len(kwargs["Entries"]) - self.failed
        )
        return {"FailedEntryCount": self.failed, "Entries": entries}


def _feature(name: str, status: str, psi: float | None) -> FeatureDrift:
    return FeatureDrift(name, status, 100, 0.0, 0.0, psi=psi, ks_statistic=None if psi is None else 0.2)


def _report(version: str, drifted: bool) -> VersionReport:
    features = [_feature("a", ALARM if drifted else OK, 0.5 if drifted else 0.01), _feature("b", INSUFFICIENT, None)]
    return VersionReport(version, "drift_detected" if drifted else "no_drift", rows=100, features=features)


def test_version_metrics_skip_features_without_statistics() -> None:
    data = version_metrics("ep", _report("1", drifted=True), WHEN)
    names = [(d["MetricName"], tuple(x["Value"] for x in d["Dimensions"])) for d in data]
    assert ("PSI", ("ep", "1", "a")) in names
    assert not any(dims[-1] == "b" for _, dims in names)
    assert next(d["Value"] for d in data if d["MetricName"] == "FeaturesDrifted") == 1.0


def test_metrics_are_sent_in_batches() -> None:
    data = endpoint_metrics("ep", CaptureBatch(), WHEN) * 5  # 20 data
    recorder = Recorder()
    assert publish(recorder, "NS", data, batch_size=6) == 4
    assert [len(call["MetricData"]) for call in recorder.calls] == [6, 6, 6, 2]


def test_endpoint_metrics_count_the_skipped_test_traffic() -> None:
    batch = CaptureBatch(records=7, test_traffic_records=5)
    values = {d["MetricName"]: d["Value"] for d in endpoint_metrics("ep", batch, WHEN)}
    assert values["TestTrafficRecords"] == 5.0 and values["CaptureRecords"] == 7.0


def test_one_event_per_drifted_version_in_batches_of_ten() -> None:
    reports = [_report(str(i), drifted=i % 2 == 0) for i in range(24)]  # 12 drifted
    recorder = Recorder()
    assert publish_drift_events(recorder, SETTINGS, WINDOW, reports) == 12
    assert [len(call["Entries"]) for call in recorder.calls] == [10, 2]
    detail = json.loads(recorder.calls[0]["Entries"][0]["Detail"])
    assert detail["modelVersion"] == "0"
    assert detail["window"] == {"start": "2026-11-25T12:00:00Z", "end": "2026-11-25T13:00:00Z"}
    assert detail["driftedFeatures"][0]["feature"] == "a"


def test_rejected_events_raise_so_the_run_is_retried() -> None:
    with pytest.raises(EventPublishError):
        publish_drift_events(Recorder(failed=1), SETTINGS, WINDOW, [_report("1", drifted=True)])
