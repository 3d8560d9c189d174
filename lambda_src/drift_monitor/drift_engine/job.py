"""One drift-monitoring run: stream the window's capture into per-version statistics, report, alert."""

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drift_engine import metrics_publisher
from drift_engine.baseline_store import BaselineNotFound, load_baseline, served_content_hash
from drift_engine.capture_records import (
    UNKNOWN_VERSION,
    CapturedRow,
    CaptureStats,
    iter_capture_records,
    row_version,
)
from drift_engine.drift_events import publish_drift_events
from drift_engine.feature_drift import INSUFFICIENT, VersionStream
from drift_engine.ground_truth import LabelSet, QualityStream, parse_label_lines
from drift_engine.reports import (
    INVALID_INPUT,
    NO_DRIFT,
    SUMMARY_FOLDER,
    VersionReport,
    capture_section,
    put_json,
    report_key,
    summary_document,
    version_document,
)
from drift_engine.s3_lines import ObjectStats, iter_lines, list_keys
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


def load_labels(settings: Settings, window: Window, s3: Any) -> tuple[LabelSet | None, ObjectStats]:
    objects = ObjectStats()
    root = settings.ground_truth_root
    if root is None:
        return None, objects
    keys = list_keys(s3, settings.ground_truth_bucket, window.hour_prefixes(root), stats=objects)
    return parse_label_lines(iter_lines(s3, settings.ground_truth_bucket, keys, objects)), objects


# A baseline that cannot be read as one (bad metadata.json, a `null` or `[1]` document, a short CSV) is that
# version's `baseline_error`; an AWS error is not data and fails the run (Lambda retries it).
_BASELINE_DATA_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError)


@dataclass
class VersionRun:
    """One model version's part of the run: its rows streamed into statistics, or only counted without a baseline."""

    version: str
    stream: VersionStream | None = None
    quality: QualityStream | None = None
    baseline: dict[str, Any] | None = None
    unanalysed: VersionReport | None = None  # no_baseline / baseline_error, decided before the first row
    rows: int = 0

    def check(self, rows: list[CapturedRow], probability_of: str) -> None:
        """Raise MalformedPayload when a row's response does not fit the task of the model that served it."""
        if self.stream is not None:
            for row in rows:
                self.stream.output.read(row.prediction, probability_of)

    def add(self, key: str | None, rows: list[CapturedRow]) -> None:
        self.rows += len(rows)
        if self.stream is not None:
            for row in rows:
                self.stream.add(row)
        if self.quality is not None:
            self.quality.add_record(key, rows)


def _seed(window: Window, version: str) -> int:
    """The reservoirs' seed: a retried run of a window samples (and reports) exactly as the first attempt."""
    return zlib.crc32(f"{iso(window.start)}|{version}".encode())


def open_version(
    settings: Settings, s3: Any, version: str, labels: LabelSet | None, window: Window, releases: Any = None
) -> VersionRun:
    if version == UNKNOWN_VERSION:
        return VersionRun(
            version, unanalysed=VersionReport(version, "no_baseline", rows=0, error="response carried no model_version")
        )
    # The baseline of the build that served this version (a version names several builds); the release history
    # says which. Without a record of it, load_baseline falls back to the one baseline published under the version.
    served = served_content_hash(releases, settings.endpoint_name, version) if releases is not None else None
    try:
        baseline = load_baseline(s3, settings.baseline_bucket, settings.baseline_prefix, version, content_hash=served)
    except BaselineNotFound as missing:
        logger.warning("no baseline for model version", extra={"model_version": version})
        return VersionRun(
            version, unanalysed=VersionReport(version, "no_baseline", rows=0, error=f"no baseline at {missing}")
        )
    except ClientError:
        raise
    except _BASELINE_DATA_ERRORS as error:
        logger.exception("unusable baseline", extra={"model_version": version})
        return VersionRun(version, unanalysed=VersionReport(version, "baseline_error", rows=0, error=str(error)))
    seed = _seed(window, version)
    return VersionRun(
        version,
        stream=VersionStream(baseline, settings.thresholds, settings.probability_of, settings.reservoir_size, seed),
        quality=None
        if labels is None
        else QualityStream(labels, settings.probability_of, settings.reservoir_size, seed, baseline.output),
        baseline={
            "uri": baseline.uri,
            "task": baseline.output.task,
            "content_hash": baseline.content_hash,
            "served_content_hash": served,
            "rows": int(baseline.values.shape[0]),
            "has_prediction_baseline": baseline.prediction_scores is not None,
        },
    )


def close_version(settings: Settings, run: VersionRun) -> VersionReport:
    if run.stream is None:
        assert run.unanalysed is not None
        run.unanalysed.rows = run.rows
        return run.unanalysed
    features, prediction, mismatched = run.stream.finish()
    quality = None
    if run.quality is not None:
        quality = run.quality.result(settings.thresholds.min_ground_truth_labels)
    report = VersionReport(
        model_version=run.version,
        status=NO_DRIFT,
        rows=run.rows - mismatched,
        schema_mismatch_rows=mismatched,
        features=features,
        prediction=prediction,
        quality=quality,
        baseline=run.baseline,
    )
    if report.rows == 0 and mismatched:
        width = len(run.stream.names)
        report.error = f"all {mismatched} rows are lists of another width than the schema's {width} features"
    if report.rows == 0:
        report.status = INVALID_INPUT  # nothing comparable: never "no_drift", and no event
    elif report.drifted:
        report.status = "drift_detected"
    elif all(result.status == INSUFFICIENT for result in [*features, *([prediction] if prediction else [])]):
        report.status = INSUFFICIENT
    return report


def stream_capture(
    settings: Settings, window: Window, clients: AwsClients, labels: LabelSet | None
) -> tuple[CaptureStats, ObjectStats, list[VersionReport]]:
    """Read the window's capture once, line by line, into per-version statistics; nothing grows with the window
    but the counters."""
    objects = ObjectStats()
    keys = list_keys(clients.s3, settings.capture_bucket, window.hour_prefixes(settings.capture_root), stats=objects)
    stats = CaptureStats()
    runs: dict[str, VersionRun] = {}

    def run_of(version: str) -> VersionRun:
        if version not in runs:
            runs[version] = open_version(settings, clients.s3, version, labels, window, clients.releases)
        return runs[version]

    def by_version(rows: list[CapturedRow]) -> list[tuple[VersionRun, list[CapturedRow]]]:
        versions = sorted({row_version(row) for row in rows})
        if len(versions) == 1:
            return [(run_of(versions[0]), rows)]
        return [(run_of(v), [row for row in rows if row_version(row) == v]) for v in versions]

    def check(rows: list[CapturedRow]) -> None:
        for run, part in by_version(rows):
            run.check(part, settings.probability_of)

    lines = iter_lines(clients.s3, settings.capture_bucket, keys, objects)
    for rows in iter_capture_records(lines, stats, settings.test_inference_id_prefix, check):
        for run, part in by_version(rows):
            run.add(part[0].join_key, part)
    return stats, objects, [close_version(settings, runs[version]) for version in sorted(runs)]


def run_drift_job(
    settings: Settings, window: Window, clients: AwsClients, now: datetime | None = None
) -> dict[str, Any]:
    """Run the whole job and return the summary document (also written to S3)."""
    generated_at = iso(now or datetime.now(UTC))
    labels, label_objects = load_labels(settings, window, clients.s3)
    stats, objects, reports = stream_capture(settings, window, clients, labels)
    capture = capture_section(stats, objects)
    for report in reports:
        document = version_document(settings, window, report, capture, generated_at)
        report.report_uri = put_json(
            clients.s3, settings.report_bucket, report_key(settings, report.model_version, window), document
        )
    summary = summary_document(settings, window, reports, capture, generated_at)
    summary["ground_truth_malformed_lines"] = labels.malformed_lines if labels else None
    summary["ground_truth"] = {**labels.as_dict(), "objects": label_objects.as_dict()} if labels else None
    summary["report_uri"] = put_json(
        clients.s3, settings.report_bucket, report_key(settings, SUMMARY_FOLDER, window), summary
    )
    data = metrics_publisher.endpoint_metrics(settings.endpoint_name, stats, window.start)
    for report in reports:
        data.extend(metrics_publisher.version_metrics(settings.endpoint_name, report, window.start))
    metrics_publisher.publish(clients.cloudwatch, settings.metrics_namespace, data)
    summary["events_sent"] = publish_drift_events(clients.events, settings, window, reports)
    logger.info(
        "drift run finished",
        extra={
            "window": window.as_dict(),
            "files": objects.listed,
            "rows": stats.total_rows,
            "malformed_records": stats.malformed_records,
            "test_traffic_records": stats.test_traffic_records,
            "drift_detected": summary["drift_detected"],
            "events_sent": summary["events_sent"],
        },
    )
    return summary
