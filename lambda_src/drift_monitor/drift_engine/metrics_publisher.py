"""CloudWatch metrics for a run, sent with PutMetricData in API-sized batches."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from drift_engine.capture_records import CaptureStats
from drift_engine.reports import VersionReport

# PutMetricData accepts up to 1,000 metric data per request (and 1 MB); 30 features x 2 metrics
# plus summaries stays far below, batching only matters for many versions in one window.
MAX_METRICS_PER_CALL = 1000

Datum = dict[str, Any]


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
    if report.prediction and report.prediction.psi is not None and report.prediction.ks_statistic is not None:
        data.append(_datum("PredictionPSI", report.prediction.psi, dims, when))
        data.append(_datum("PredictionKSStatistic", report.prediction.ks_statistic, dims, when))
    if report.quality:
        data.append(_datum("GroundTruthLabels", report.quality.joined_labels, dims, when, "Count"))
        if report.quality.accuracy is not None:
            data.append(_datum("Accuracy", report.quality.accuracy, dims, when))
        if report.quality.roc_auc is not None:
            data.append(_datum("RocAuc", report.quality.roc_auc, dims, when))
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
