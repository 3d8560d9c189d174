"""CloudWatch metrics for a run, sent with PutMetricData in API-sized batches."""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from drift_engine.capture_records import CaptureStats
from drift_engine.reports import VersionReport

# PutMetricData accepts up to 1,000 metric data per request (and 1 MB); 30 features x 2 metrics
# plus summaries stays far below, batching only matters for many versions in one window.
MAX_METRICS_PER_CALL = 1000

Datum = dict[str, Any]

# CloudWatch metric names of the ground-truth quality metrics (card metric names -> metric names, in
# quality_metrics.json, which the infrastructure reads as data), per task:
# binary accuracy, precision, recall, roc_auc; multiclass accuracy, macro_f1, min_class_recall (and ClassRecall
# with a `Class` dimension per class name); regression rmse, mae, r2. ml_constructs/drift_monitor.py alarms on them
# (tests/infra/test_drift_monitor.py runs this publisher against the construct's alarms).
_NAMES = json.loads(Path(__file__).with_name("quality_metrics.json").read_text())
QUALITY_METRIC_NAMES: dict[str, str] = _NAMES["names"]
CLASS_RECALL: str = _NAMES["class_recall"]


def _datum(name: str, value: float, dims: dict[str, str], when: datetime, unit: str = "None") -> Datum:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": key, "Value": val} for key, val in dims.items()],
        "Timestamp": when,
        "Value": float(value),
        "Unit": unit,
    }


def endpoint_metrics(endpoint: str, batch: CaptureStats, when: datetime) -> list[Datum]:
    """Window-wide counts; RowsAnalysed is published (as 0) even for an empty window."""
    dims = {"EndpointName": endpoint}
    return [
        _datum("RowsAnalysed", batch.total_rows, dims, when, "Count"),
        _datum("CaptureRecords", batch.records, dims, when, "Count"),
        _datum("MalformedRecords", batch.malformed_records, dims, when, "Count"),
        _datum("TestTrafficRecords", batch.test_traffic_records, dims, when, "Count"),
    ]


def run_skipped(endpoint: str, when: datetime) -> Datum:
    """One run found another holding the decision lock and analysed nothing (its window needs a backfill)."""
    return _datum("RunsSkipped", 1, {"EndpointName": endpoint}, when, "Count")


def run_failed(endpoint: str, when: datetime) -> Datum:
    """One attempt of a run failed (Lambda retries it; the third failure dead-letters the event)."""
    return _datum("RunsFailed", 1, {"EndpointName": endpoint}, when, "Count")


def version_metrics(endpoint: str, report: VersionReport, when: datetime) -> list[Datum]:
    dims = {"EndpointName": endpoint, "ModelVersion": report.model_version}
    if report.status in ("no_baseline", "baseline_error"):
        return [_datum("RowsWithoutBaseline", report.rows, dims, when, "Count")]
    data = [
        _datum("RowsAnalysed", report.rows, dims, when, "Count"),
        _datum("FeaturesDrifted", len(report.drifted), dims, when, "Count"),
        _datum("MissingRate", report.mean_rate("missing_rate"), dims, when),
        _datum("OutOfRangeRate", report.mean_rate("out_of_range_rate"), dims, when),
        _datum("SchemaMismatchRows", report.schema_mismatch_rows, dims, when, "Count"),
    ]
    for result in report.features:
        if result.psi is None or result.ks_statistic is None:
            continue  # insufficient data: no point value rather than a misleading zero
        feature_dims = {**dims, "Feature": result.feature}
        data.append(_datum("PSI", result.psi, feature_dims, when))
        data.append(_datum("KSStatistic", result.ks_statistic, feature_dims, when))
    data.extend(prediction_metrics(report, dims, when))
    data.extend(quality_metrics(report, dims, when))
    return data


def prediction_metrics(report: VersionReport, dims: dict[str, str], when: datetime) -> list[Datum]:
    """PredictionPSI for every task (binary probability, multiclass predicted class, regression value); the
    KS statistic (binary, regression) or the chi-square statistic over classes (multiclass)."""
    prediction = report.prediction
    if prediction is None or prediction.psi is None:
        return []
    data = [_datum("PredictionPSI", prediction.psi, dims, when)]
    if prediction.ks_statistic is not None:
        data.append(_datum("PredictionKSStatistic", prediction.ks_statistic, dims, when))
    chi_square = getattr(prediction, "chi_square_statistic", None)
    if chi_square is not None:
        data.append(_datum("PredictionChiSquare", chi_square, dims, when))
    return data


def quality_metrics(report: VersionReport, dims: dict[str, str], when: datetime) -> list[Datum]:
    """GroundTruthLabels, and the task's quality metrics that could be computed (no point for a missing one)."""
    quality = report.quality
    if quality is None:
        return []
    data = [_datum("GroundTruthLabels", quality.joined_labels, dims, when, "Count")]
    for name, value in quality.metrics.items():
        if value is not None:
            data.append(_datum(QUALITY_METRIC_NAMES[name], value, dims, when))
    for label, value in quality.class_recall.items():
        if value is not None and quality.status == "ok":
            data.append(_datum(CLASS_RECALL, value, {**dims, "Class": label}, when))
    return data


def chunks(items: Sequence[Datum], size: int) -> Iterable[Sequence[Datum]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def publish(cloudwatch: Any, namespace: str, data: Sequence[Datum], batch_size: int = MAX_METRICS_PER_CALL) -> int:
    """Send all data; returns the number of PutMetricData calls made."""
    calls = 0
    for chunk in chunks(data, batch_size):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=list(chunk))
        calls += 1
    return calls
