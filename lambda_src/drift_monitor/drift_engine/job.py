"""One drift-monitoring run: read the window's capture, compare per version, report, alert."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from drift_engine import metrics_publisher
from drift_engine.baseline_store import BaselineNotFound, load_baseline, served_content_hash
from drift_engine.capture_records import UNKNOWN_VERSION, CapturedRow, group_capture_lines
from drift_engine.drift_events import publish_drift_events
from drift_engine.feature_drift import compare_version
from drift_engine.ground_truth import LabelSet, evaluate_quality, parse_label_lines
from drift_engine.reports import (
    SUMMARY_FOLDER,
    VersionReport,
    capture_section,
    put_json,
    report_key,
    summary_document,
    version_document,
)
from drift_engine.s3_lines import iter_lines, list_keys
from drift_engine.settings import Settings
from drift_engine.window import Window, iso

logger = Logger(child=True)


@dataclass(frozen=True)
class AwsClients:
    """boto3 clients the job talks to (injected so tests can use moto or stubs)."""

    s3: Any
    cloudwatch: Any
    events: Any
    releases: Any = None  # a boto3 DynamoDB Table of the release history, or None (baselines by version only)
    dynamodb: Any = None  # a boto3 DynamoDB client for the decision lock (the Lambda handler's)


def load_labels(settings: Settings, window: Window, s3: Any) -> LabelSet | None:
    root = settings.ground_truth_root
    if root is None:
        return None
    keys = list_keys(s3, settings.ground_truth_bucket, window.hour_prefixes(root))
    return parse_label_lines(iter_lines(s3, settings.ground_truth_bucket, keys))


def analyse_version(
    settings: Settings,
    s3: Any,
    version: str,
    rows: list[CapturedRow],
    labels: LabelSet | None,
    releases: Any = None,
) -> VersionReport:
    if version == UNKNOWN_VERSION:
        return VersionReport(version, "no_baseline", rows=len(rows), error="response carried no model_version")
    # The baseline of the build that served this version (a version names several builds); the release history
    # says which. Without a record of it, load_baseline falls back to the one baseline published under the version.
    served = served_content_hash(releases, settings.endpoint_name, version) if releases is not None else None
    try:
        baseline = load_baseline(
            s3, settings.baseline_bucket, settings.baseline_prefix, version, content_hash=served
        )
    except BaselineNotFound as missing:
        logger.warning("no baseline for model version", extra={"model_version": version})
        return VersionReport(version, "no_baseline", rows=len(rows), error=f"no baseline at {missing}")
    except (ValueError, KeyError, TypeError) as error:
        logger.exception("unusable baseline", extra={"model_version": version})
        return VersionReport(version, "baseline_error", rows=len(rows), error=str(error))
    features, prediction, mismatched = compare_version(baseline, rows, settings.thresholds, settings.probability_of)
    quality = None
    if labels is not None:
        min_labels = settings.thresholds.min_ground_truth_labels
        quality = evaluate_quality(rows, labels, settings.probability_of, min_labels)
    report = VersionReport(
        model_version=version,
        status="no_drift",
        rows=len(rows) - mismatched,
        schema_mismatch_rows=mismatched,
        features=features,
        prediction=prediction,
        quality=quality,
        baseline={
            "uri": baseline.uri,
            "content_hash": baseline.content_hash,
            "served_content_hash": served,
            "rows": int(baseline.values.shape[0]),
            "has_prediction_baseline": baseline.prediction_scores is not None,
        },
    )
    if report.drifted:
        report.status = "drift_detected"
    return report


def run_drift_job(
    settings: Settings, window: Window, clients: AwsClients, now: datetime | None = None
) -> dict[str, Any]:
    """Run the whole job and return the summary document (also written to S3)."""
    generated_at = iso(now or datetime.now(UTC))
    keys = list_keys(clients.s3, settings.capture_bucket, window.hour_prefixes(settings.capture_root))
    lines = iter_lines(clients.s3, settings.capture_bucket, keys)
    batch = group_capture_lines(lines, settings.test_inference_id_prefix)
    capture = capture_section(batch, len(keys))
    labels = load_labels(settings, window, clients.s3)
    reports = [
        analyse_version(settings, clients.s3, version, rows, labels, clients.releases)
        for version, rows in sorted(batch.rows_by_version.items())
    ]
    for report in reports:
        document = version_document(settings, window, report, capture, generated_at)
        report.report_uri = put_json(
            clients.s3, settings.report_bucket, report_key(settings, report.model_version, window), document
        )
    summary = summary_document(settings, window, reports, capture, generated_at)
    summary["ground_truth_malformed_lines"] = labels.malformed_lines if labels else None
    summary["report_uri"] = put_json(
        clients.s3, settings.report_bucket, report_key(settings, SUMMARY_FOLDER, window), summary
    )
    data = metrics_publisher.endpoint_metrics(settings.endpoint_name, batch, window.start)
    for report in reports:
        data.extend(metrics_publisher.version_metrics(settings.endpoint_name, report, window.start))
    metrics_publisher.publish(clients.cloudwatch, settings.metrics_namespace, data)
    summary["events_sent"] = publish_drift_events(clients.events, settings, window, reports)
    logger.info(
        "drift run finished",
        extra={
            "window": window.as_dict(),
            "files": len(keys),
            "rows": batch.total_rows,
            "malformed_records": batch.malformed_records,
            "test_traffic_records": batch.test_traffic_records,
            "drift_detected": summary["drift_detected"],
            "events_sent": summary["events_sent"],
        },
    )
    return summary
