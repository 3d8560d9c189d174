"""Report documents written to S3: one per model version seen, and one summary per run."""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from drift_engine.capture_records import CaptureStats
from drift_engine.feature_drift import ALARM, FeatureDrift
from drift_engine.ground_truth import QualityResult
from drift_engine.s3_lines import ObjectStats
from drift_engine.settings import Settings
from drift_engine.window import Window

REPORT_FORMAT_VERSION = 1
SUMMARY_FOLDER = "_summary"
NO_DRIFT = "no_drift"
# A version whose rows could not be compared at all (every row a list of another width than the schema): an
# explicit verdict, never "no_drift" (EVENTS.md, "Report status").
INVALID_INPUT = "invalid_input"


@dataclass
class VersionReport:
    """Outcome for the rows served by one model version in the window."""

    model_version: str
    status: str  # drift_detected | no_drift | insufficient_data | invalid_input | no_baseline | baseline_error
    rows: int
    schema_mismatch_rows: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    quality: QualityResult | None = None
    baseline: dict[str, Any] | None = None
    error: str | None = None
    report_uri: str | None = None

    @property
    def drifted(self) -> list[FeatureDrift]:
        if self.status == INVALID_INPUT:
            return []  # no row was comparable: the score's statistics are reported, no alarm is raised on them
        candidates = [*self.features, *([self.prediction] if self.prediction else [])]
        return [result for result in candidates if result.status == ALARM]

    def mean_rate(self, attribute: str) -> float:
        """Average over features of a per-feature rate (0 when nothing was analysed)."""
        values = [getattr(result, attribute) for result in self.features]
        return float(np.mean(values)) if values and self.rows else 0.0


def report_key(settings: Settings, folder: str, window: Window) -> str:
    return f"drift-reports/{settings.endpoint_name}/{folder}/{window.start:%Y/%m/%d/%H}/report.json"


def capture_section(batch: CaptureStats, objects: ObjectStats) -> dict[str, Any]:
    return {
        "files": objects.listed,
        # Listed objects gone before the read (NoSuchKey), damaged .gz objects, and other suffixes never read.
        "objects": objects.as_dict(),
        "records": batch.records,
        "rows": batch.total_rows,
        # The pipeline's marked test requests, read but left out of every statistic.
        "test_traffic_records": batch.test_traffic_records,
        "malformed_records": batch.malformed_records,
        "malformed_reasons": dict(batch.malformed_reasons),
        "malformed_samples": batch.malformed_samples,
    }


def version_document(
    settings: Settings, window: Window, report: VersionReport, capture: dict[str, Any], generated_at: str
) -> dict[str, Any]:
    return {
        "report_format_version": REPORT_FORMAT_VERSION,
        "generated_at": generated_at,
        "endpoint_name": settings.endpoint_name,
        "variant_name": settings.variant_name,
        "model_version": report.model_version,
        # The card's task (binary_classification | multiclass_classification | regression): it says how the
        # prediction and ground_truth sections read. None without a readable baseline.
        "task": (report.baseline or {}).get("task"),
        "window": window.as_dict(),
        "status": report.status,
        "error": report.error,
        "rows_analysed": report.rows,
        "schema_mismatch_rows": report.schema_mismatch_rows,
        "missing_rate": report.mean_rate("missing_rate"),
        "out_of_range_rate": report.mean_rate("out_of_range_rate"),
        "drifted_features": [result.feature for result in report.drifted],
        "baseline": report.baseline,
        "thresholds": asdict(settings.thresholds.default),
        "threshold_overrides": {name: asdict(t) for name, t in settings.thresholds.overrides.items()},
        "features": [result.as_dict() for result in report.features],
        "prediction": report.prediction.as_dict() if report.prediction else None,
        "ground_truth": report.quality.as_dict() if report.quality else None,
        "capture": capture,
    }


def summary_document(
    settings: Settings,
    window: Window,
    reports: list[VersionReport],
    capture: dict[str, Any],
    generated_at: str,
) -> dict[str, Any]:
    total_rows = sum(report.rows for report in reports)
    captured_rows = capture.get("rows", total_rows)
    # no_data: nothing captured; invalid_input: capture lines, none of them readable; analysed: rows were read
    # (each version's own status says what came of them).
    status = "analysed" if captured_rows else INVALID_INPUT if capture.get("malformed_records") else "no_data"
    return {
        "report_format_version": REPORT_FORMAT_VERSION,
        "generated_at": generated_at,
        "endpoint_name": settings.endpoint_name,
        "variant_name": settings.variant_name,
        "window": window.as_dict(),
        "status": status,
        "rows_total": total_rows,
        "drift_detected": any(report.drifted for report in reports),
        "versions": {
            report.model_version: {
                "status": report.status,
                "rows": report.rows,
                "drifted_features": [result.feature for result in report.drifted],
                "report_uri": report.report_uri,
            }
            for report in reports
        },
        "versions_without_baseline": [r.model_version for r in reports if r.status == "no_baseline"],
        "capture": capture,
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: report them as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def put_json(s3: Any, bucket: str, key: str, document: dict[str, Any]) -> str:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(_finite(document), indent=2, allow_nan=False, default=str).encode("utf-8"),
        ContentType="application/json",
    )
    return f"s3://{bucket}/{key}"
