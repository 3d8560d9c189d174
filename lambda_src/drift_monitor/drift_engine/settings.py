"""Configuration of the drift job, read once from the Lambda environment."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from drift_engine.capture_records import TEST_INFERENCE_ID_PREFIX

PREDICTION_KEY = "__prediction__"
# A window is whole hours, at most a day: platform_config MonitoringSettings.window_hours allows 1..24, and a
# backfill ({"window_hours": n}) gets the same bound (the Lambda's 15 minutes; the Fargate task has no other).
MAX_WINDOW_HOURS = 24
DEFAULT_RESERVOIR_SIZE = 10_000  # per feature: see feature_drift.DEFAULT_RESERVOIR_SIZE
MAX_RESERVOIR_SIZE = 1_000_000
# The release history table (ml_constructs/release_history_table.py) that says which model build served.
RELEASES_TABLE_VARIABLE = "RELEASES_TABLE"


@dataclass(frozen=True)
class Thresholds:
    """Drift thresholds for one feature (or the prediction score)."""

    psi_warn: float = 0.1
    psi_alarm: float = 0.25
    ks_p_value: float = 0.01
    min_samples: int = 50
    max_missing_rate: float = 0.05
    max_out_of_range_rate: float = 0.05
    psi_bins: int = 10


@dataclass(frozen=True)
class ThresholdConfig:
    """Default thresholds plus per-feature overrides (key `__prediction__` for the score)."""

    default: Thresholds = field(default_factory=Thresholds)
    overrides: Mapping[str, Thresholds] = field(default_factory=dict)
    min_ground_truth_labels: int = 20

    def for_feature(self, name: str) -> Thresholds:
        return self.overrides.get(name, self.default)


_THRESHOLD_FIELDS = set(Thresholds.__dataclass_fields__)


def _threshold_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - _THRESHOLD_FIELDS
    if unknown:
        raise ValueError(f"unknown threshold keys: {sorted(unknown)}")
    return dict(raw)


def parse_thresholds(text: str | None) -> ThresholdConfig:
    """Parse THRESHOLDS_JSON, e.g. {"psi_alarm": 0.3, "features": {"mean_area": {"psi_alarm": 0.5}}}."""
    raw: dict[str, Any] = json.loads(text) if text else {}
    per_feature = raw.pop("features", {}) or {}
    min_labels = int(raw.pop("min_ground_truth_labels", 20))
    default = replace(Thresholds(), **_threshold_values(raw))
    overrides = {name: replace(default, **_threshold_values(values)) for name, values in per_feature.items()}
    return ThresholdConfig(default=default, overrides=overrides, min_ground_truth_labels=min_labels)


def _join_prefix(*parts: str) -> str:
    """Join S3 key parts with single slashes and a trailing slash ("" parts are skipped)."""
    cleaned = [part.strip("/") for part in parts if part.strip("/")]
    return "/".join(cleaned) + "/" if cleaned else ""


def _bounded_int(value: Any, key: str, low: int, high: int) -> int:
    """An integer in [low, high] (an integer-valued number or its text); ValueError naming `key` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be an integer {low}..{high}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key} must be an integer {low}..{high}, got {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{key} must be an integer {low}..{high}, got {value!r}")
    return int(number)


def window_hours(value: Any, key: str = "window_hours") -> int:
    """Hours of a window, 1..MAX_WINDOW_HOURS: `0` is an error naming `key`, not the default."""
    return _bounded_int(value, key, 1, MAX_WINDOW_HOURS)


@dataclass(frozen=True)
class Settings:
    """Everything the job needs from the environment."""

    endpoint_name: str
    variant_name: str
    capture_bucket: str
    capture_prefix: str
    baseline_bucket: str
    baseline_prefix: str
    report_bucket: str
    metrics_namespace: str
    event_bus_name: str
    window_hours: int
    thresholds: ThresholdConfig
    ground_truth_bucket: str
    ground_truth_prefix: str | None
    probability_of: str
    # Capture records whose inference id starts with this are the pipeline's test traffic, left out ("" keeps all).
    test_inference_id_prefix: str = TEST_INFERENCE_ID_PREFIX
    # The release history table the serving model's content hash is read from (None: baselines by version only).
    releases_table: str | None = None
    # Values kept per feature for the KS test and pairs for ROC AUC (RESERVOIR_SIZE): all of a smaller window.
    reservoir_size: int = DEFAULT_RESERVOIR_SIZE

    @property
    def capture_root(self) -> str:
        """Key prefix of this endpoint/variant's capture files, ending with '/'."""
        return _join_prefix(self.capture_prefix, self.endpoint_name, self.variant_name)

    @property
    def ground_truth_root(self) -> str | None:
        if self.ground_truth_prefix is None:
            return None
        return _join_prefix(self.ground_truth_prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        # The serving container reports P(label = 1); "predicted_label" is for servers that report P(predicted label).
        probability_of = env.get("PROBABILITY_OF", "positive_class")
        if probability_of not in ("predicted_label", "positive_class"):
            raise ValueError("PROBABILITY_OF must be predicted_label or positive_class")
        return cls(
            endpoint_name=env["ENDPOINT_NAME"],
            variant_name=env.get("VARIANT_NAME", "AllTraffic"),
            capture_bucket=env["CAPTURE_BUCKET"],
            capture_prefix=env.get("CAPTURE_PREFIX", "datacapture"),
            baseline_bucket=env["BASELINE_BUCKET"],
            baseline_prefix=_join_prefix(env.get("BASELINE_PREFIX", "baselines/")),
            report_bucket=env["REPORT_BUCKET"],
            metrics_namespace=env.get("METRICS_NAMESPACE", "MLPlatform/ModelDrift"),
            event_bus_name=env.get("EVENT_BUS_NAME", "default"),
            window_hours=window_hours(env.get("WINDOW_HOURS", "1"), "WINDOW_HOURS"),
            thresholds=parse_thresholds(env.get("THRESHOLDS_JSON")),
            ground_truth_bucket=env.get("GROUND_TRUTH_BUCKET") or env["CAPTURE_BUCKET"],
            ground_truth_prefix=env.get("GROUND_TRUTH_PREFIX") or None,
            probability_of=probability_of,
            test_inference_id_prefix=env.get("TEST_INFERENCE_ID_PREFIX", TEST_INFERENCE_ID_PREFIX),
            releases_table=env.get(RELEASES_TABLE_VARIABLE) or None,
            reservoir_size=_bounded_int(
                env.get("RESERVOIR_SIZE", str(DEFAULT_RESERVOIR_SIZE)), "RESERVOIR_SIZE", 100, MAX_RESERVOIR_SIZE
            ),
        )
