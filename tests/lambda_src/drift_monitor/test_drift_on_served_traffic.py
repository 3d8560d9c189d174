"""The drift job on capture files made from real traffic through the serving container (issue #6).

A real model server, started with the image's entry point on a fresh build as tests/model_container does,
answers a few hundred rows sent as JSON (row lists and feature objects), CSV, and charset-qualified content
types. This module plays SageMaker's data-capture layer: one JSON Lines record per request holding the exact
request and response bodies, encoded the way the endpoint's CaptureContentTypeHeader makes SageMaker encode
them, under `{endpoint}/{variant}/yyyy/mm/dd/hh/`. The build's baseline is published with the pipeline's
script, and the drift Lambda runs on the window against moto S3 and CloudWatch.

Parametrised over the example packages (tests/model_packages.py: binary, multiclass, regression): every fact
asserted (feature names, shifted features, rows, thresholds, holdout metrics) comes from the package's card and
files, and the quality alarms compared with are the construct's own (ml_constructs.drift_monitor.quality_alarms).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from drift_engine.settings import Thresholds

from ml_constructs.drift_monitor import quality_alarms
from model_container.card import ModelCard
from model_container.evaluation import predictions
from platform_config import MonitoringSettings
from scripts.publish_baseline import publish
from tests.lambda_src.drift_monitor.test_handler_integration import (
    HOUR,
    SCHEDULED,
    FakeContext,
    Platform,
    load_handler,
    platform,
)
from tests.model_container.conftest import ServerProcess, server_logs
from tests.model_packages import EXAMPLES, example_package

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drift_served_traffic")]

__all__ = ["platform", "server_logs"]  # imported fixtures, requested by name below

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
TRAINING_ROWS_IN_TRAFFIC = 186  # at most this many distinct baseline.csv rows sent next to the whole holdout set
TRAINING_SHARE_IN_TRAFFIC = 0.7  # and at most this share of them (a small package's baseline is small)
SHIFTED_COUNT = 2  # the features the model's predictions move most with are shifted
SHIFT_SDS = 2.0  # baseline standard deviations added to the shifted features, clipped to the schema maximum
PSI_ALARM = Thresholds().psi_alarm  # the job's default alarm level
MIN_SAMPLES = Thresholds().min_samples
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
class Package:
    """An example model package: its files, its card, and model.tar.gz unpacked as SageMaker does."""

    dist: Path
    contract: Path
    model_dir: Path
    card: ModelCard

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.card.raw)


@dataclass(frozen=True)
class Traffic:
    build: Package
    feature_names: list[str]
    shifted_features: list[str]  # schema order
    unchanged: list[Exchange]
    shifted: list[Exchange]
    holdout: list[Exchange]  # the holdout rows alone, in order: their truth is the first column of holdout.csv
    holdout_truth: np.ndarray

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


@pytest.fixture(scope="module", params=list(EXAMPLES.values()), ids=list(EXAMPLES))
def package(request: pytest.FixtureRequest) -> Iterator[Package]:
    """An example package (one per task) with its model unpacked where the server's `nobody` can read it."""
    dist = example_package(request.param)
    # mkdtemp + chmod, not tmp_path: the server drops to `nobody`, who must read the model.
    model_dir = Path(tempfile.mkdtemp(prefix="drift-served-model-"))
    model_dir.chmod(0o755)
    try:
        with tarfile.open(dist / "model.tar.gz") as archive:
            archive.extractall(model_dir, filter="data")
        yield Package(dist, dist.parent / "contract", model_dir, ModelCard.load(dist))
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def _prediction_change(card: ModelCard, old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> float:
    """How far the model's prediction moves between two runs over the same rows: the mean change of P(positive)
    (binary), the share of rows whose class changes (multiclass), the mean change of the value in baseline
    standard deviations (regression)."""
    if card.task == "regression":
        return float(np.mean(np.abs(new["value"] - old["value"])) / max(old["value"].std(), 1e-12))
    if card.task == "multiclass_classification":
        return float(np.mean(new["label"] != old["label"]))
    positive = card.positive_label or 0
    return float(np.mean(np.abs(new["probabilities"][:, positive] - old["probabilities"][:, positive])))


def shift(card: ModelCard, baseline: np.ndarray, rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """`rows` with the named features moved up by SHIFT_SDS baseline deviations, kept within the schema's maximum
    (the server must still answer 200)."""
    schema = card.feature_schema["features"]
    moved = rows.copy()
    for name in names:
        column = card.feature_names.index(name)
        moved[:, column] = np.minimum(
            moved[:, column] + SHIFT_SDS * baseline[:, column].std(), schema[column]["maximum"]
        )
    return moved


def most_influential(card: ModelCard, dist: Path, baseline: np.ndarray) -> list[str]:
    """The SHIFTED_COUNT features whose shift together moves the model's predictions most, in schema order:
    shifting them must drift the predictions as well as the features. Pairs, not single features: two features
    with opposite weights (the diabetes model's s1 and s5) cancel out when shifted together."""
    onnx = (dist / "model.onnx").read_bytes()
    groups = list(itertools.combinations(card.feature_names, SHIFTED_COUNT))
    old = predictions(onnx, baseline, card.task)
    # One run over every group's shifted copy of the baseline (a row's prediction depends on that row alone).
    new = predictions(onnx, np.vstack([shift(card, baseline, baseline, group) for group in groups]), card.task)
    rows = len(baseline)

    def change(index: int) -> float:
        part = {key: value[index * rows : (index + 1) * rows] for key, value in new.items()}
        return _prediction_change(card, old, part)

    best = max(range(len(groups)), key=change)
    return list(groups[best])


@pytest.fixture(scope="module")
def traffic(package: Package, server_logs: Path) -> Iterator[Traffic]:
    """Unchanged, shifted and holdout-only traffic, sent through a real server started on the package's model."""
    card = package.card
    names = card.feature_names
    baseline = np.loadtxt(package.dist / "baseline.csv", delimiter=",", ndmin=2)
    holdout_file = np.loadtxt(package.dist / "holdout.csv", delimiter=",", ndmin=2)
    holdout, truth = holdout_file[:, 1:], holdout_file[:, 0]
    rng = np.random.default_rng(20261125)
    # Resampling the holdout rows with replacement repeats rows, which alone lifts a feature's PSI towards the
    # alarm level (0.255 for 300 rows of the breast-cancer model); the whole holdout plus distinct training rows is
    # a fair unchanged sample.
    training_rows = min(TRAINING_ROWS_IN_TRAFFIC, int(TRAINING_SHARE_IN_TRAFFIC * len(baseline)))
    sampled = baseline[rng.choice(len(baseline), training_rows, replace=False)]
    unchanged = np.vstack([holdout, sampled])
    unchanged = unchanged[rng.permutation(len(unchanged))]
    shifted_features = most_influential(card, package.dist, baseline)
    shifted = shift(card, baseline, unchanged, shifted_features)
    server = ServerProcess(package.model_dir, server_logs, workers=1)
    try:
        server.wait_ready()
        yield Traffic(
            package,
            names,
            shifted_features,
            _serve(server, unchanged, names),
            _serve(server, shifted, names),
            _serve(server, holdout, names),
            truth,
        )
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
    """SageMaker data-capture records, one per request, timed within the window's hour (ground truth joins on
    their eventId)."""
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
    assert 2 * MIN_SAMPLES <= rows_sent(traffic.unchanged) == rows_sent(traffic.shifted) <= 400
    assert traffic.served_version == traffic.build.card.version


def test_unchanged_traffic_flags_no_feature(platform: Platform, traffic: Traffic) -> None:
    lines = [to_line(record) for record in capture_records(traffic.unchanged, seed=1)]
    upload_files(platform, split(lines, 3), seed=1)

    result = run_job(platform, traffic)

    assert (result["status"], result["drift_detected"], result["events_sent"]) == ("analysed", False, 0)
    report = assert_analysed(platform, traffic, traffic.unchanged, records=len(lines))
    assert (report["status"], report["drifted_features"]) == ("no_drift", [])
    assert report["task"] == traffic.build.card.task
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
    # The shifted features are the ones the predictions move most with, so the served predictions drift too:
    # P(positive), the predicted-class distribution or the value against baseline_predictions.csv.
    shifted = traffic.shifted_features
    assert (report["status"], report["drifted_features"]) == ("drift_detected", [*shifted, "__prediction__"])
    assert report["task"] == traffic.build.card.task
    assert report["prediction"]["status"] == "alarm"
    by_name = {feature["feature"]: feature for feature in report["features"]}
    for name, feature in by_name.items():
        if name in shifted:
            assert feature["status"] == "alarm"
            assert feature["psi"] > 4 * PSI_ALARM
            assert feature["ks_p_value"] < 1e-6
        else:
            assert feature["status"] in ("ok", "warn"), feature
            assert feature["psi"] < PSI_ALARM / 2, feature
    version = traffic.served_version
    assert platform.metric("FeaturesDrifted", EndpointName=ENDPOINT, ModelVersion=version) == [len(shifted) + 1.0]
    unshifted = next(name for name in traffic.feature_names if name not in shifted)
    for name in (*shifted, unshifted):
        dims = {"EndpointName": ENDPOINT, "ModelVersion": version, "Feature": name}
        assert platform.metric("PSI", **dims) == [pytest.approx(by_name[name]["psi"])]
    (psi,) = platform.metric("PredictionPSI", EndpointName=ENDPOINT, ModelVersion=version)
    assert psi == pytest.approx(report["prediction"]["psi"]) and psi >= PSI_ALARM
    (event,) = platform.drift_events()
    assert event["Detail"]["modelVersion"] == version
    assert event["Detail"]["rowsAnalysed"] == rows_sent(traffic.shifted)
    assert [f["feature"] for f in event["Detail"]["driftedFeatures"]] == [*shifted, "__prediction__"]


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


def _wrong_truth(card: ModelCard, exchanges: list[Exchange], truth: np.ndarray) -> list[float]:
    """Ground truth that disagrees with every prediction: the next class of the predicted one (classifiers), the
    true target moved by twice the card's RMSE ceiling (or the holdout RMSE) upwards (regression)."""
    if card.is_classifier:
        served = [p["label"] for x in exchanges for p in json.loads(x.response_body)["predictions"]]
        return [float((label + 1) % card.classes) for label in served]
    ceiling = card.acceptance.get("rmse", {}).get("max") or card.holdout_metrics["rmse"]
    return [float(value) + 2 * ceiling for value in truth]


def upload_truth(platform: Platform, records: list[dict[str, Any]], exchanges: list[Exchange], truth: list[float]):
    """One label line per capture record, joined on its eventId, with one label per instance in order."""
    lines, start = [], 0
    for record, exchange in zip(records, exchanges, strict=True):
        values = truth[start : start + exchange.rows]
        lines.append(json.dumps({"eventId": record["eventMetadata"]["eventId"], "labels": values}))
        start += exchange.rows
    platform.s3.put_object(Bucket="labels", Key=f"ground-truth/{HOUR}/labels.jsonl", Body="\n".join(lines) + "\n")


def _crosses(value: float, side: str, threshold: float) -> bool:
    """Whether the alarm on this value fires: below a floor (LessThanThreshold), above a ceiling (GreaterThan)."""
    return value < threshold if side == "min" else value > threshold


@pytest.mark.parametrize("agreeing", [True, False], ids=["holdout-truth", "wrong-truth"])
def test_ground_truth_quality_per_task_and_its_alarms(
    platform: Platform, traffic: Traffic, monkeypatch: pytest.MonkeyPatch, agreeing: bool
) -> None:
    """The holdout rows served with their true labels (or targets) give the card's holdout metrics, inside every
    quality alarm the construct makes of the card; ground truth that disagrees crosses every one of them."""
    monkeypatch.setenv("GROUND_TRUTH_BUCKET", "labels")
    monkeypatch.setenv("GROUND_TRUTH_PREFIX", "ground-truth")
    card = traffic.build.card
    records = capture_records(traffic.holdout, seed=4)
    upload_files(platform, [[to_line(record) for record in records]], seed=4)
    truth = traffic.holdout_truth.tolist() if agreeing else _wrong_truth(card, traffic.holdout, traffic.holdout_truth)
    upload_truth(platform, records, traffic.holdout, truth)

    run_job(platform, traffic)

    quality = platform.report(traffic.served_version)["ground_truth"]
    assert (quality["status"], quality["task"]) == ("ok", card.task)
    assert quality["joined_labels"] == len(truth) == rows_sent(traffic.holdout)
    dims = {"EndpointName": ENDPOINT, "ModelVersion": traffic.served_version}
    assert platform.metric("GroundTruthLabels", **dims) == [float(len(truth))]
    alarms = quality_alarms(card.task, card.acceptance, MonitoringSettings().min_accuracy)
    assert {alarm.metric for alarm in alarms} >= set(card.acceptance)
    for alarm in alarms:
        (published,) = platform.metric(alarm.metric_name, **dims)
        assert published == pytest.approx(quality[alarm.metric])
        assert _crosses(published, alarm.side, alarm.threshold) is not agreeing, (alarm, published)
    if agreeing:
        # The served predictions are the exported graph's, rounded to 6 decimals: the build's holdout metrics.
        for metric in card.metrics:
            assert quality[metric] == pytest.approx(card.holdout_metrics[metric], rel=1e-4, abs=1e-5), metric
    if card.task == "multiclass_classification":
        recalls = {name: platform.metric("ClassRecall", **dims, Class=name) for name in card.label_names}
        assert recalls == {name: [pytest.approx(quality["class_recall"][name])] for name in card.label_names}
        assert all(math.isfinite(value) for (value,) in recalls.values())
