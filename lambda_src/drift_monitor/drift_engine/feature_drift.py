"""Compare one model version's captured rows with its baseline, feature by feature."""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from drift_engine.baseline_store import Baseline, FeatureSpec
from drift_engine.capture_records import CapturedRow
from drift_engine.drift_statistics import (
    ks_test,
    missing_rate,
    out_of_range_rate,
    population_stability_index,
)
from drift_engine.payload_decoding import Prediction, to_float
from drift_engine.settings import PREDICTION_KEY, ThresholdConfig, Thresholds

OK, WARN, ALARM, INSUFFICIENT = "ok", "warn", "alarm", "insufficient_data"


@dataclass
class FeatureDrift:
    """Drift statistics and verdict for one feature (or the prediction score)."""

    feature: str
    status: str
    samples: int
    missing_rate: float
    out_of_range_rate: float
    psi: float | None = None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def rows_to_matrix(rows: Sequence[CapturedRow], names: Sequence[str]) -> tuple[np.ndarray, int]:
    """Rows -> (matrix in schema order, rows dropped for not matching the schema)."""
    matrix, mismatched = [], 0
    for row in rows:
        if isinstance(row.instance, dict):
            matrix.append([to_float(row.instance.get(name)) for name in names])
        elif len(row.instance) == len(names):
            matrix.append([to_float(value) for value in row.instance])
        else:
            mismatched += 1
    return np.array(matrix, dtype=float).reshape(len(matrix), len(names)), mismatched


def positive_class_score(prediction: Prediction | None, probability_of: str) -> float:
    """Score of class 1; the container may report the probability of the predicted label instead."""
    if prediction is None or prediction.probability is None:
        return math.nan
    if probability_of == "predicted_label" and prediction.label == 0:
        return 1.0 - prediction.probability
    return prediction.probability


def _verdict(result: FeatureDrift, limits: Thresholds) -> None:
    psi = result.psi or 0.0
    p_value = 1.0 if result.ks_p_value is None else result.ks_p_value
    if psi >= limits.psi_alarm:
        result.reasons.append(f"psi {psi:.3f} >= alarm {limits.psi_alarm}")
    elif psi >= limits.psi_warn:
        result.reasons.append(f"psi {psi:.3f} >= warn {limits.psi_warn}")
    if p_value < limits.ks_p_value:
        result.reasons.append(f"ks p-value {p_value:.2g} < {limits.ks_p_value}")
    if result.missing_rate > limits.max_missing_rate:
        result.reasons.append(f"missing rate {result.missing_rate:.3f} > {limits.max_missing_rate}")
    if result.out_of_range_rate > limits.max_out_of_range_rate:
        rate, limit = result.out_of_range_rate, limits.max_out_of_range_rate
        result.reasons.append(f"out-of-range rate {rate:.3f} > {limit}")
    # Only PSI raises an alarm. KS on hourly windows of hundreds of rows, run over 30 features,
    # rejects by chance every few runs (and on big windows rejects negligible shifts), so a KS
    # rejection is a warning, visible in the report and the KSStatistic metric.
    if psi >= limits.psi_alarm:
        result.status = ALARM
    elif result.reasons:
        result.status = WARN


def compare_distribution(
    name: str, baseline: np.ndarray, current: np.ndarray, spec: FeatureSpec | None, limits: Thresholds
) -> FeatureDrift:
    """Drift of one column; NaNs are missing values and excluded from the distribution tests."""
    present = current[~np.isnan(current)]
    reference = baseline[~np.isnan(baseline)]
    result = FeatureDrift(
        feature=name,
        status=OK,
        samples=int(present.size),
        missing_rate=missing_rate(current),
        out_of_range_rate=out_of_range_rate(current, spec.minimum, spec.maximum) if spec else 0.0,
    )
    if present.size < limits.min_samples or reference.size < limits.min_samples:
        result.status = INSUFFICIENT
        result.reasons.append(f"{present.size} samples < minimum {limits.min_samples}")
        return result
    result.psi = population_stability_index(reference, present, limits.psi_bins)
    ks = ks_test(reference, present)
    result.ks_statistic, result.ks_p_value = ks.statistic, ks.p_value
    _verdict(result, limits)
    return result


def compare_version(
    baseline: Baseline, rows: Sequence[CapturedRow], thresholds: ThresholdConfig, probability_of: str
) -> tuple[list[FeatureDrift], FeatureDrift | None, int]:
    """Per-feature drift, prediction-score drift (None without a score baseline), schema mismatches."""
    matrix, mismatched = rows_to_matrix(rows, baseline.feature_names)
    features = [
        compare_distribution(spec.name, baseline.values[:, i], matrix[:, i], spec, thresholds.for_feature(spec.name))
        for i, spec in enumerate(baseline.features)
    ]
    prediction = None
    if baseline.prediction_scores is not None:
        scores = np.array([positive_class_score(row.prediction, probability_of) for row in rows], dtype=float)
        limits = thresholds.for_feature(PREDICTION_KEY)
        score_range = FeatureSpec(PREDICTION_KEY, 0.0, 1.0)
        prediction = compare_distribution(PREDICTION_KEY, baseline.prediction_scores, scores, score_range, limits)
    return features, prediction, mismatched
