"""Malformed input is data, not a crash (issue 14, defect 7): one bad capture line, label line, baseline document or
vanished object never aborts the window; it is counted, with samples, in the reports (EVENTS.md, "Malformed input").
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

import pytest
from drift_engine import handler as drift_handler
from drift_engine.capture_records import group_capture_lines
from drift_engine.ground_truth import parse_label_lines
from drift_engine.job import AwsClients
from drift_engine.settings import Settings
from drift_engine.window import resolve_window
from drift_test_data import FEATURES, WIDTH, capture_line, sample_features

from tests.lambda_src.drift_monitor.test_handler_integration import (
    HOUR,
    SCHEDULED,
    FakeContext,
    Platform,
    _traffic,
    load_handler,
    platform,
)

__all__ = ["platform"]  # the imported fixture, requested by name below
ROW = [float(i) for i in range(WIDTH)]
CAPTURE_ROOT = f"datacapture/churn-ep/AllTraffic/{HOUR}"


def _record(line: str) -> dict[str, Any]:
    return dict(json.loads(line))


def _with_metadata(metadata: Any) -> str:
    record = _record(capture_line([ROW], [0.7], "1.0.0"))
    record["eventMetadata"] = metadata
    return json.dumps(record)


def _with_output(content_type: str, encoding: str, data: str) -> str:
    record = _record(capture_line([ROW], [0.7], "1.0.0"))
    record["captureData"]["endpointOutput"] = {"observedContentType": content_type, "encoding": encoding, "data": data}
    return json.dumps(record)


def _with_input_data(data: str) -> str:
    record = _record(capture_line([ROW], [0.7], "1.0.0"))
    record["captureData"]["endpointInput"]["data"] = data
    return json.dumps(record)


DEEP = 100_000  # far beyond the interpreter's recursion limit (json.loads recurses once per level)
BAD_LINES = {
    "eventMetadata a string": (_with_metadata("evt-1"), "bad eventMetadata"),
    "eventMetadata a list": (_with_metadata(["evt-1"]), "bad eventMetadata"),
    # 1e999 is valid JSON and parses as inf; int(inf) raises OverflowError.
    "json label 1e999": (
        _with_output("application/json", "JSON", '{"predictions": [{"label": 1e999, "probability": 0.7}]}'),
        "bad label",
    ),
    "csv label inf": (_with_output("text/csv", "CSV", "inf,0.7,1.0.0"), "bad label"),
    # A class index is integer-valued: 1.5 is not truncated to class 1.
    "json label 1.5": (
        _with_output("application/json", "JSON", '{"predictions": [{"label": 1.5, "probability": 0.7}]}'),
        "bad label",
    ),
    "deeply nested line": ('{"captureData": ' + "[" * DEEP + "]" * DEEP + "}", "bad json line"),
    "deeply nested body": (_with_input_data("[" * DEEP + "]" * DEEP), "bad json"),
}


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_one_bad_capture_line_is_counted_and_the_rest_grouped(name: str) -> None:
    bad, reason = BAD_LINES[name]
    good = capture_line([ROW, ROW], [0.9, 0.2], "1.0.0")
    batch = group_capture_lines([("f:1", good), ("f:2", bad), ("f:3", good)])
    assert (batch.records, batch.malformed_records, len(batch.rows_by_version["1.0.0"])) == (3, 1, 4)
    assert list(batch.malformed_reasons) == [reason]
    assert batch.malformed_samples[0]["source"] == "f:2"


def test_bad_lines_in_a_window_are_reported_not_fatal(platform: Platform) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    lines = _traffic(platform, 100, "1.0.0")
    bad = [line for line, _ in BAD_LINES.values()]
    platform.add_capture(HOUR, "a", [*lines[:10], *bad, *lines[10:]])

    result = load_handler()(SCHEDULED, FakeContext())

    assert result["status"] == "analysed"
    report = platform.report("1.0.0")
    assert report["rows_analysed"] == 100
    capture = report["capture"]
    assert (capture["records"], capture["malformed_records"]) == (20 + len(bad), len(bad))
    assert capture["malformed_reasons"] == Counter(reason for _, reason in BAD_LINES.values())
    sources = [sample["source"] for sample in capture["malformed_samples"]]
    assert sources == [f"{CAPTURE_ROOT}/a.jsonl:{11 + i}" for i in range(len(bad))]
    assert platform.metric("MalformedRecords", EndpointName="churn-ep") == [float(len(bad))]


@pytest.mark.parametrize(
    "line",
    [
        '{"inferenceId": "x", "label": "inf"}',
        '{"inferenceId": "x", "label": 1e999}',
        '{"inferenceId": "x", "labels": [1, "-inf"]}',
        '{"groundTruthData": {"data": "inf", "encoding": "CSV"}, "eventMetadata": {"eventId": "x"}}',
        '{"groundTruthData": "1", "eventMetadata": {"eventId": "x"}}',
        '{"groundTruthData": {"data": "1"}, "eventMetadata": "x"}',
        '"groundTruthData"',
        "[1]",
        "[" * DEEP + "]" * DEEP,
    ],
)
def test_a_bad_ground_truth_line_is_counted(line: str) -> None:
    labels = parse_label_lines([("g:1", '{"inferenceId": "a", "label": 1}'), ("g:2", line)])
    assert (labels.labels, labels.malformed_lines) == ({"a": [1]}, 1)


def test_bad_ground_truth_lines_are_sampled_in_the_summary(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUND_TRUTH_BUCKET", "labels")
    monkeypatch.setenv("GROUND_TRUTH_PREFIX", "ground-truth")
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_capture(HOUR, "a", _traffic(platform, 60, "1.0.0"))
    body = '{"inferenceId": "1.0.0-0", "label": 1}\n{"inferenceId": "1.0.0-5", "label": "inf"}\n'
    platform.s3.put_object(Bucket="labels", Key=f"ground-truth/{HOUR}/labels.jsonl", Body=body)

    assert load_handler()(SCHEDULED, FakeContext())["status"] == "analysed"

    truth = platform.report("_summary")["ground_truth"]
    assert (truth["lines"], truth["labels"], truth["malformed_lines"]) == (2, 1, 1)
    assert truth["malformed_samples"] == [
        {"source": f"ground-truth/{HOUR}/labels.jsonl:2", "reason": "bad label: 'inf' is not finite"}
    ]


def test_an_unusable_metadata_json_affects_only_its_version(platform: Platform) -> None:
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        platform.add_baseline(version, FEATURES)
    platform.s3.put_object(Bucket="models", Key="baselines/2.0.0/metadata.json", Body="null")
    platform.s3.put_object(Bucket="models", Key="baselines/3.0.0/metadata.json", Body="[1]")
    traffic = [_traffic(platform, rows, version) for rows, version in ((100, "1.0.0"), (60, "2.0.0"), (40, "3.0.0"))]
    platform.add_capture(HOUR, "a", [line for lines in traffic for line in lines])

    result = load_handler()(SCHEDULED, FakeContext())

    assert result["status"] == "analysed"
    assert platform.report("1.0.0")["rows_analysed"] == 100
    for version, rows in (("2.0.0", 60), ("3.0.0", 40)):
        broken = platform.report(version)
        assert (broken["status"], broken["rows_analysed"]) == ("baseline_error", rows)
        assert "metadata.json" in broken["error"]
        assert platform.metric("RowsWithoutBaseline", EndpointName="churn-ep", ModelVersion=version) == [float(rows)]


class ExpiringS3:
    """moto's S3, except that `expiring` is deleted between ListObjectsV2 and its GetObject (a lifecycle expiry)."""

    def __init__(self, s3: Any, expiring: str) -> None:
        self._s3, self.expiring = s3, expiring

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"] == self.expiring:
            self._s3.delete_object(Bucket=kwargs["Bucket"], Key=kwargs["Key"])
        return self._s3.get_object(**kwargs)


def test_an_object_expiring_between_list_and_read_is_counted_and_skipped(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_capture(HOUR, "a", _traffic(platform, 100, "1.0.0"))
    platform.add_capture(HOUR, "b", _traffic(platform, 40, "1.0.0"))
    s3 = ExpiringS3(platform.s3, f"{CAPTURE_ROOT}/b.jsonl")
    clients = AwsClients(s3, platform.cloudwatch, platform.events, platform.releases, platform.dynamodb)
    monkeypatch.setattr(drift_handler, "_clients", lambda: clients)

    result = load_handler()(SCHEDULED, FakeContext())

    assert result["status"] == "analysed"
    report = platform.report("1.0.0")
    assert report["rows_analysed"] == 100
    assert report["capture"]["files"] == 2
    assert report["capture"]["objects"]["missing"] == 1
    assert report["capture"]["objects"]["samples"][0]["key"] == f"{CAPTURE_ROOT}/b.jsonl"


def test_a_window_whose_rows_all_have_the_wrong_width_is_invalid_input_not_no_drift(platform: Platform) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    platform.add_baseline("2.0.0", FEATURES)
    values = sample_features(platform.rng, 100)[:, :-1]  # one feature short of the schema
    lines = [capture_line(values[i : i + 5].tolist(), [0.5] * 5, "1.0.0", event_id=f"e{i}") for i in range(0, 100, 5)]
    few = _traffic(platform, 20, "2.0.0")  # well-formed, but fewer than min_samples (50): no verdict either
    platform.add_capture(HOUR, "a", lines + few)

    result = load_handler()(SCHEDULED, FakeContext())

    report = platform.report("1.0.0")
    assert (report["status"], report["rows_analysed"], report["schema_mismatch_rows"]) == ("invalid_input", 0, 100)
    assert f"{WIDTH} features" in report["error"]
    assert result["drift_detected"] is False and platform.drift_events() == []
    assert platform.report("2.0.0")["status"] == "insufficient_data"
    summary = platform.report("_summary")
    assert summary["versions"]["1.0.0"]["status"] == "invalid_input"
    assert summary["status"] == "analysed"  # rows were read; what came of them is the version's status


def test_gzipped_capture_objects_are_read_and_other_objects_counted(platform: Platform) -> None:
    platform.add_baseline("1.0.0", FEATURES)
    lines = _traffic(platform, 100, "1.0.0")
    platform.add_capture(HOUR, "plain", lines[:10])
    packed = gzip.compress(("\n".join(lines[10:]) + "\n").encode())
    platform.s3.put_object(Bucket="capture", Key=f"{CAPTURE_ROOT}/packed.jsonl.gz", Body=packed)
    platform.s3.put_object(Bucket="capture", Key=f"{CAPTURE_ROOT}/torn.jsonl.gz", Body=packed[: len(packed) // 2])
    platform.s3.put_object(Bucket="capture", Key=f"{CAPTURE_ROOT}/notes.txt", Body=b"not capture")

    load_handler()(SCHEDULED, FakeContext())

    report = platform.report("1.0.0")
    capture = report["capture"]
    assert capture["files"] == 3
    assert (capture["objects"]["skipped"], capture["objects"]["unreadable"]) == (1, 1)
    keys = {sample["key"] for sample in capture["objects"]["samples"]}
    assert keys == {f"{CAPTURE_ROOT}/notes.txt", f"{CAPTURE_ROOT}/torn.jsonl.gz"}
    # 100 rows of plain + packed; the torn copy adds the rows of its lines before the damage (whole lines only).
    assert report["rows_analysed"] >= 100 and (report["rows_analysed"] - 100) % 5 == 0


@pytest.mark.parametrize("hours", [0, -1, 25, 1.5, "many", True])
def test_an_events_window_hours_outside_1_to_24_is_an_error_naming_the_key(hours: Any) -> None:
    with pytest.raises(ValueError, match="window_hours"):
        resolve_window({"window_start": "2026-11-25T12:00:00Z", "window_hours": hours}, 1)


def test_window_hours_24_and_the_default_still_work() -> None:
    window = resolve_window({"window_start": "2026-11-25T12:00:00Z", "window_hours": 24}, 1)
    assert (window.end - window.start).total_seconds() == 24 * 3600
    assert (resolve_window({"window_start": "2026-11-25T12:00:00Z"}, 3).end.hour) == 15


@pytest.mark.parametrize("hours", ["0", "25", "x", ""])
def test_a_bad_window_hours_variable_is_an_error_naming_it(hours: str) -> None:
    env = {"ENDPOINT_NAME": "ep", "CAPTURE_BUCKET": "c", "BASELINE_BUCKET": "b", "REPORT_BUCKET": "r"}
    with pytest.raises(ValueError, match="WINDOW_HOURS"):
        Settings.from_env({**env, "WINDOW_HOURS": hours})


@pytest.mark.parametrize("size", ["0", "99", "1000001", "ten"])
def test_a_reservoir_size_outside_its_bounds_is_an_error_naming_it(size: str) -> None:
    env = {"ENDPOINT_NAME": "ep", "CAPTURE_BUCKET": "c", "BASELINE_BUCKET": "b", "REPORT_BUCKET": "r"}
    assert Settings.from_env(env).reservoir_size == 10_000
    with pytest.raises(ValueError, match="RESERVOIR_SIZE"):
        Settings.from_env({**env, "RESERVOIR_SIZE": size})


def test_the_container_task_refuses_window_hours_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from drift_engine import task

    for name, value in {
        "ENDPOINT_NAME": "ep",
        "CAPTURE_BUCKET": "c",
        "BASELINE_BUCKET": "b",
        "REPORT_BUCKET": "r",
    }.items():
        monkeypatch.setenv(name, value)
    assert task.main(["--window-hours", "0"], clients=object()) == 1  # never reaches the clients
    failure = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert failure["event"] == "drift_run_failed" and "window_hours" in failure["error"]
