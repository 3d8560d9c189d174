"""The drift job on capture files made from real traffic through the serving container (issue #6).

A real model server, started with the image's entry point on a fresh build as tests/model_container does,
answers a few hundred rows sent as JSON (row lists and feature objects), CSV, and charset-qualified content
types. This module plays SageMaker's data-capture layer: one JSON Lines record per request holding the exact
request and response bodies, encoded the way the endpoint's CaptureContentTypeHeader makes SageMaker encode
them, under `{endpoint}/{variant}/yyyy/mm/dd/hh/`. The build's baseline is published with the pipeline's
script, and the drift Lambda runs on the window against moto S3 and CloudWatch.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from drift_engine.settings import Thresholds

from scripts.publish_baseline import publish
from tests.lambda_src.drift_monitor.test_handler_integration import (
    HOUR,
    SCHEDULED,
    FakeContext,
    Platform,
    load_handler,
    platform,
)
from tests.model_container.conftest import Build, ServerProcess, model_build, server_logs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drift_served_traffic")]

__all__ = ["model_build", "platform", "server_logs"]  # imported fixtures, requested by name below

# The endpoint config's CaptureContentTypeHeader (ml_constructs/model_endpoint.py): SageMaker stores bodies of
# these content types as text and others BASE64. Matching is taken to be exact, so a header with a charset
# parameter is captured BASE64 (AWS does not document it either way; the job must read both forms).
CAPTURE_JSON_TYPES = ("application/json",)
CAPTURE_CSV_TYPES = ("text/csv",)
# (Content-Type, body form), cycled over the requests: both JSON instance forms, CSV, and two content types
# that SageMaker captures BASE64-encoded.
REQUEST_FORMS = (
    ("application/json", "lists"),
    ("text/csv", "csv"),
    ("application/json", "objects"),
    ("text/csv; charset=utf-8", "csv"),
    ("application/json; charset=utf-8", "lists"),
)
BATCH_SIZES = (1, 7, 16, 25, 3, 40, 12)  # cycled: single-row and batch requests
TRAINING_ROWS_IN_TRAFFIC = 186  # distinct baseline.csv rows sent next to the whole holdout set
SHIFTED_FEATURES = ["mean_texture", "worst_smoothness"]  # schema order
SHIFT_SDS = 2.0  # baseline standard deviations added to the shifted features, clipped to the schema maximum
PSI_ALARM = Thresholds().psi_alarm  # the job's default alarm level
ENDPOINT = "churn-ep"  # the moto platform's endpoint/variant/capture prefix (test_handler_integration)
CAPTURE_ROOT = f"datacapture/{ENDPOINT}/AllTraffic/{HOUR}"


@dataclass(frozen=True)
class Exchange:
    """One /invocations request and the server's answer, byte for byte."""

    request_type: str
    request_body: bytes
    response_type: str
    response_body: bytes
    rows: int

    def model_versions(self) -> list[str]:
        return [p["model_version"] for p in json.loads(self.response_body)["predictions"]]


@dataclass(frozen=True)
class Traffic:
    build: Build
    feature_names: list[str]
    unchanged: list[Exchange]
    shifted: list[Exchange]

    @property
    def served_version(self) -> str:
        (version,) = {v for exchange in self.unchanged + self.shifted for v in exchange.model_versions()}
        return version


def _request_body(rows: np.ndarray, form: str, names: list[str]) -> bytes:
    if form == "csv":
        return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()
    values = rows.tolist()
    instances = [dict(zip(names, row, strict=True)) for row in values] if form == "objects" else values
    return json.dumps({"instances": instances}).encode()


def _serve(server: ServerProcess, rows: np.ndarray, names: list[str]) -> list[Exchange]:
    """Send `rows` in batches of varying size and content type; every request must succeed."""
    exchanges: list[Exchange] = []
    start = 0
    while start < len(rows):
        number = len(exchanges)
        batch = rows[start : start + BATCH_SIZES[number % len(BATCH_SIZES)]]
        content_type, form = REQUEST_FORMS[number % len(REQUEST_FORMS)]
        body = _request_body(batch, form, names)
        status, headers, answer = server.request("POST", "/invocations", body, {"Content-Type": content_type})
        assert status == 200, answer
        exchanges.append(Exchange(content_type, body, headers["Content-Type"], answer, len(batch)))
        start += len(batch)
    return exchanges


@pytest.fixture(scope="module")
def traffic(model_build: Build, server_logs: Path) -> Iterator[Traffic]:
    """Unchanged and shifted traffic, sent through a real server started on a fresh build."""
    schema = model_build.metadata["feature_schema"]["features"]
    names = [spec["name"] for spec in schema]
    baseline = np.loadtxt(model_build.dist / "baseline.csv", delimiter=",", ndmin=2)
    holdout = np.loadtxt(model_build.dist / "holdout.csv", delimiter=",", ndmin=2)[:, 1:]
    rng = np.random.default_rng(20261125)
    # Resampling the 114 holdout rows with replacement repeats rows, which alone lifts one feature's PSI to the
    # alarm level (0.255 for 300 rows); the whole holdout plus distinct training rows is a fair unchanged sample.
    sampled = baseline[rng.choice(len(baseline), TRAINING_ROWS_IN_TRAFFIC, replace=False)]
    unchanged = np.vstack([holdout, sampled])
    unchanged = unchanged[rng.permutation(len(unchanged))]
    shifted = unchanged.copy()
    for name in SHIFTED_FEATURES:
        column = names.index(name)
        moved = shifted[:, column] + SHIFT_SDS * baseline[:, column].std()
        shifted[:, column] = np.minimum(moved, schema[column]["maximum"])  # the server must still answer 200
    server = ServerProcess(model_build.model_dir, server_logs, workers=1)
    try:
        server.wait_ready()
        yield Traffic(model_build, names, _serve(server, unchanged, names), _serve(server, shifted, names))
    finally:
        server.stop()


def _captured(mode: str, content_type: str, body: bytes) -> dict[str, str]:
    if content_type in CAPTURE_JSON_TYPES:
        encoding, data = "JSON", body.decode("utf-8")
    elif content_type in CAPTURE_CSV_TYPES:
        encoding, data = "CSV", body.decode("utf-8")
    else:
        encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def capture_records(exchanges: list[Exchange], seed: int) -> list[dict[str, Any]]:
    """SageMaker data-capture records, one per request, timed within the window's hour."""
    ids = random.Random(seed)
    hour = datetime.strptime(HOUR, "%Y/%m/%d/%H")
    return [
        {
            "captureData": {
                "endpointInput": _captured("INPUT", exchange.request_type, exchange.request_body),
                "endpointOutput": _captured("OUTPUT", exchange.response_type, exchange.response_body),
            },
            "eventMetadata": {
                "eventId": str(uuid.UUID(int=ids.getrandbits(128), version=4)),
                "inferenceTime": f"{hour + timedelta(seconds=41 * number):%Y-%m-%dT%H:%M:%S}Z",
            },
            "eventVersion": "0",
        }
        for number, exchange in enumerate(exchanges)
    ]


def to_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def upload_files(platform: Platform, files: list[list[str]], seed: int) -> list[str]:
    """One capture object per list of lines, named like SageMaker's (`mm-ss-mmm-<uuid>.jsonl`); returns the keys."""
    ids = random.Random(seed)
    keys = []
    for number, lines in enumerate(files):
        name = f"{12 * number:02d}-{7 * number:02d}-{100 + number:03d}-{uuid.UUID(int=ids.getrandbits(128))}"
        platform.add_capture(HOUR, name, lines)
        keys.append(f"{CAPTURE_ROOT}/{name}.jsonl")
    return keys


def split(lines: list[str], parts: int) -> list[list[str]]:
    size = -(-len(lines) // parts)
    return [lines[start : start + size] for start in range(0, len(lines), size)]


def run_job(platform: Platform, traffic: Traffic) -> dict[str, Any]:
    """Publish the build's baseline as the pipeline does, then run the Lambda for the capture hour."""
    published = publish(traffic.build.dist, "models", platform.s3, contract_dir=traffic.build.contract)
    # Keyed on the version or, since issue 13 item 11, on the content hash: either way one baseline.csv.
    assert [key for key in published if key.endswith("/baseline.csv")]
    result: dict[str, Any] = load_handler()(SCHEDULED, FakeContext())
    return result


def rows_sent(exchanges: list[Exchange]) -> int:
    return sum(exchange.rows for exchange in exchanges)


def assert_analysed(platform: Platform, traffic: Traffic, exchanges: list[Exchange], records: int) -> dict[str, Any]:
    """Checks shared by every scenario; returns the served version's report."""
    version, rows = traffic.served_version, rows_sent(exchanges)
    report = platform.report(version)
    assert report["rows_analysed"] == rows
    assert report["schema_mismatch_rows"] == 0
    assert report["baseline"]["rows"] == len((traffic.build.dist / "baseline.csv").read_text().splitlines())
    assert report["baseline"]["content_hash"] == traffic.build.metadata["content_sha256"]
    assert [f["feature"] for f in report["features"]] == traffic.feature_names
    for feature in report["features"]:
        # Every value passed the server's range check, and the job must agree with the same schema.
        assert (feature["samples"], feature["missing_rate"], feature["out_of_range_rate"]) == (rows, 0.0, 0.0)
        assert feature["psi"] is not None and feature["ks_p_value"] is not None
    summary = platform.report("_summary")
    assert list(summary["versions"]) == [version]  # no `unknown`: every prediction carried its version
    assert summary["rows_total"] == rows
    assert platform.metric("RowsAnalysed", EndpointName=ENDPOINT) == [float(rows)]
    assert platform.metric("RowsAnalysed", EndpointName=ENDPOINT, ModelVersion=version) == [float(rows)]
    assert platform.metric("CaptureRecords", EndpointName=ENDPOINT) == [float(records)]
    return report


def test_traffic_covers_every_capture_encoding(traffic: Traffic) -> None:
    encodings = {
        (record["captureData"]["endpointInput"]["encoding"], record["captureData"]["endpointOutput"]["encoding"])
        for record in capture_records(traffic.unchanged, seed=1)
    }
    assert encodings == {("JSON", "JSON"), ("CSV", "JSON"), ("BASE64", "JSON")}
    assert 250 <= rows_sent(traffic.unchanged) == rows_sent(traffic.shifted) <= 400
    assert traffic.served_version == traffic.build.metadata["model_version"]


def test_unchanged_traffic_flags_no_feature(platform: Platform, traffic: Traffic) -> None:
    lines = [to_line(record) for record in capture_records(traffic.unchanged, seed=1)]
    upload_files(platform, split(lines, 3), seed=1)

    result = run_job(platform, traffic)

    assert (result["status"], result["drift_detected"], result["events_sent"]) == ("analysed", False, 0)
    report = assert_analysed(platform, traffic, traffic.unchanged, records=len(lines))
    assert (report["status"], report["drifted_features"]) == ("no_drift", [])
    assert report["prediction"]["status"] in ("ok", "warn") and report["prediction"]["psi"] < PSI_ALARM / 2
    assert max(feature["psi"] for feature in report["features"]) < PSI_ALARM / 2
    assert report["capture"]["files"] == 3
    assert report["capture"]["malformed_records"] == 0
    version = traffic.served_version
    assert platform.metric("FeaturesDrifted", EndpointName=ENDPOINT, ModelVersion=version) == [0.0]
    assert platform.metric("MalformedRecords", EndpointName=ENDPOINT) == [0.0]
    assert platform.drift_events() == []


def test_shifted_features_are_flagged_and_the_others_are_not(platform: Platform, traffic: Traffic) -> None:
    lines = [to_line(record) for record in capture_records(traffic.shifted, seed=2)]
    upload_files(platform, split(lines, 3), seed=2)

    result = run_job(platform, traffic)

    assert (result["status"], result["drift_detected"], result["events_sent"]) == ("analysed", True, 1)
    report = assert_analysed(platform, traffic, traffic.shifted, records=len(lines))
    # Both shifts raise the malignancy score, so the served probabilities drift too (baseline_predictions.csv).
    assert (report["status"], report["drifted_features"]) == ("drift_detected", [*SHIFTED_FEATURES, "__prediction__"])
    assert report["prediction"]["status"] == "alarm"
    by_name = {feature["feature"]: feature for feature in report["features"]}
    for name, feature in by_name.items():
        if name in SHIFTED_FEATURES:
            assert feature["status"] == "alarm"
            assert feature["psi"] > 4 * PSI_ALARM
            assert feature["ks_p_value"] < 1e-6
        else:
            assert feature["status"] in ("ok", "warn"), feature
            assert feature["psi"] < PSI_ALARM / 2, feature
    version = traffic.served_version
    assert platform.metric("FeaturesDrifted", EndpointName=ENDPOINT, ModelVersion=version) == [3.0]
    for name in (*SHIFTED_FEATURES, "mean_radius"):
        dims = {"EndpointName": ENDPOINT, "ModelVersion": version, "Feature": name}
        assert platform.metric("PSI", **dims) == [pytest.approx(by_name[name]["psi"])]
    (event,) = platform.drift_events()
    assert event["Detail"]["modelVersion"] == version
    assert event["Detail"]["rowsAnalysed"] == rows_sent(traffic.shifted)
    assert [f["feature"] for f in event["Detail"]["driftedFeatures"]] == [*SHIFTED_FEATURES, "__prediction__"]


def test_malformed_capture_lines_are_counted_and_the_rest_analysed(platform: Platform, traffic: Traffic) -> None:
    records = capture_records(traffic.unchanged, seed=3)
    lines = [to_line(record) for record in records]
    multi_row = next(i for i, x in enumerate(traffic.unchanged) if x.rows > 1 and x.request_type in CAPTURE_JSON_TYPES)
    json_as_csv = json.loads(lines[multi_row])  # a JSON body declared as CSV: one CSV row for many predictions
    json_as_csv["captureData"]["endpointInput"]["encoding"] = "CSV"
    json_as_base64 = json.loads(lines[0])  # plain text declared BASE64
    json_as_base64["captureData"]["endpointInput"]["encoding"] = "BASE64"
    first, second, third = split(lines, 3)
    files = [
        [*first[:4], lines[5][: len(lines[5]) // 2], *first[4:]],  # a line cut short inside the file
        [to_line(json_as_base64), *second, to_line(json_as_csv)],
        [*third, lines[-1][:-40]],  # a torn last write: the file's last record stops mid-object
    ]
    keys = upload_files(platform, files, seed=3)

    result = run_job(platform, traffic)

    assert (result["status"], result["drift_detected"]) == ("analysed", False)
    report = assert_analysed(platform, traffic, traffic.unchanged, records=len(lines) + 4)
    assert (report["status"], report["drifted_features"]) == ("no_drift", [])
    assert report["prediction"]["status"] in ("ok", "warn") and report["prediction"]["psi"] < PSI_ALARM / 2
    capture = report["capture"]
    assert capture["malformed_records"] == 4
    assert capture["malformed_reasons"] == {"bad json line": 2, "bad base64": 1, "count mismatch": 1}
    assert sorted(sample["source"] for sample in capture["malformed_samples"]) == sorted(
        [f"{keys[0]}:5", f"{keys[1]}:1", f"{keys[1]}:{len(second) + 2}", f"{keys[2]}:{len(third) + 1}"]
    )
    assert platform.report("_summary")["capture"]["malformed_records"] == 4
    assert platform.metric("MalformedRecords", EndpointName=ENDPOINT) == [4.0]
