"""Compare one model version's captured rows with its baseline, feature by feature."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from drift_engine.baseline_store import Baseline, FeatureSpec
from drift_engine.capture_records import CapturedRow
from drift_engine.drift_statistics import (
    Reservoir,
    bin_counts,
    bin_shares,
    chi_square_test,
    ks_test,
    psi_from_counts,
    quantile_bin_edges,
)
from drift_engine.model_output import BINARY, MULTICLASS, REGRESSION, ModelOutput
from drift_engine.payload_decoding import Prediction, to_float
from drift_engine.settings import DEFAULT_RESERVOIR_SIZE, PREDICTION_KEY, ThresholdConfig, Thresholds

OK, WARN, ALARM, INSUFFICIENT = "ok", "warn", "alarm", "insufficient_data"
# DEFAULT_RESERVOIR_SIZE values per feature are kept for the KS test (and pairs for ROC AUC): the whole window up
# to that many, a uniform sample of it beyond. 30 features x 10,000 floats is 2.4 MB per version, whatever the
# window's size.
CHUNK_ROWS = 4096  # rows buffered as Python lists before they are folded into the column statistics


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


@dataclass
class ClassDrift(FeatureDrift):
    """Prediction drift of a multiclass model: the predicted-class distribution against the baseline's (the
    argmax of each baseline_predictions.csv row), PSI over the classes and a chi-square goodness-of-fit test."""

    chi_square_statistic: float | None = None
    chi_square_p_value: float | None = None
    class_shares: dict[str, float] = field(default_factory=dict)
    baseline_class_shares: dict[str, float] = field(default_factory=dict)


def rows_to_matrix(rows: Sequence[CapturedRow], names: Sequence[str]) -> tuple[np.ndarray, int]:
    """Rows -> (matrix in schema order, rows dropped for not matching the schema)."""
    matrix, mismatched = [], 0
    for row in rows:
        values = row_values(row.instance, names)
        if values is None:
            mismatched += 1
        else:
            matrix.append(values)
    return np.array(matrix, dtype=float).reshape(len(matrix), len(names)), mismatched


def positive_class_score(prediction: Prediction | None, probability_of: str) -> float:
    """A binary model's score of class 1 (the default card's positive label); the container may report the
    probability of the predicted label instead. Other tasks and positive labels: ModelOutput.read."""
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
    chi_p = getattr(result, "chi_square_p_value", None)
    if chi_p is not None and chi_p < limits.ks_p_value:
        result.reasons.append(f"chi-square p-value {chi_p:.2g} < {limits.ks_p_value}")
    if result.missing_rate > limits.max_missing_rate:
        result.reasons.append(f"missing rate {result.missing_rate:.3f} > {limits.max_missing_rate}")
    if result.out_of_range_rate > limits.max_out_of_range_rate:
        rate, limit = result.out_of_range_rate, limits.max_out_of_range_rate
        result.reasons.append(f"out-of-range rate {rate:.3f} > {limit}")
    # Only PSI raises an alarm. KS (and chi-square over classes) on hourly windows of hundreds of rows, run over
    # dozens of features, rejects by chance every few runs (and on big windows rejects negligible shifts), so a
    # rejection is a warning, visible in the report and the KSStatistic / PredictionChiSquare metrics.
    if psi >= limits.psi_alarm:
        result.status = ALARM
    elif result.reasons:
        result.status = WARN


class ColumnStats:
    """One column's drift statistics, accumulated chunk by chunk in fixed memory: counts of rows, missing and
    out-of-range values, counts on the baseline's PSI bins, and a uniform reservoir of present values for KS."""

    def __init__(self, baseline: np.ndarray, spec: FeatureSpec | None, limits: Thresholds, reservoir: Reservoir):
        self.reference = baseline[~np.isnan(baseline)]
        self.spec, self.limits, self.reservoir = spec, limits, reservoir
        # Without a baseline value there is nothing to bin (the verdict is insufficient_data anyway).
        self.edges = quantile_bin_edges(self.reference, limits.psi_bins) if self.reference.size else None
        self.counts = np.zeros(0 if self.edges is None else self.edges.size + 1, dtype=np.int64)
        self.rows = self.present = self.out_of_range = 0

    def add(self, column: np.ndarray) -> None:
        present = column[~np.isnan(column)]
        self.rows += column.size
        self.present += present.size
        if self.spec is not None:
            outside = np.zeros(present.size, dtype=bool)
            if self.spec.minimum is not None:
                outside |= present < self.spec.minimum
            if self.spec.maximum is not None:
                outside |= present > self.spec.maximum
            self.out_of_range += int(outside.sum())
        if self.edges is not None:
            self.counts += bin_counts(present, self.edges)
        self.reservoir.add(present)

    def result(self, name: str) -> FeatureDrift:
        """The verdict, as compare_distribution gives it for the whole column at once."""
        limits = self.limits
        result = FeatureDrift(
            feature=name,
            status=OK,
            samples=self.present,
            missing_rate=(self.rows - self.present) / self.rows if self.rows else 0.0,
            out_of_range_rate=self.out_of_range / self.present if self.present else 0.0,
        )
        if self.present < limits.min_samples or self.reference.size < limits.min_samples or self.edges is None:
            result.status = INSUFFICIENT
            result.reasons.append(f"{self.present} samples < minimum {limits.min_samples}")
            return result
        result.psi = psi_from_counts(bin_shares(self.reference, self.edges), self.counts)
        # KS on the reservoir: the whole window up to its size, a uniform sample of it beyond.
        ks = ks_test(self.reference, self.reservoir.sample())
        result.ks_statistic, result.ks_p_value = ks.statistic, ks.p_value
        _verdict(result, limits)
        return result


class ClassStats:
    """A multiclass model's predicted-class counts against the baseline's predicted-class shares, in fixed
    memory (one counter per class); rows without a predicted class count as missing."""

    def __init__(self, baseline_probabilities: np.ndarray, output: ModelOutput, limits: Thresholds) -> None:
        self.names, self.limits = output.label_names, limits
        complete = baseline_probabilities[~np.isnan(baseline_probabilities).any(axis=1)]
        self.reference = np.bincount(np.argmax(complete, axis=1), minlength=output.classes)
        self.counts = np.zeros(output.classes, dtype=np.int64)
        self.rows = 0

    def add(self, labels: np.ndarray) -> None:
        """Predicted class indices of a chunk (-1: no prediction)."""
        self.rows += labels.size
        self.counts += np.bincount(labels[labels >= 0], minlength=self.counts.size)

    def result(self, name: str) -> ClassDrift:
        limits, present, reference = self.limits, int(self.counts.sum()), int(self.reference.sum())
        result = ClassDrift(
            feature=name,
            status=OK,
            samples=present,
            missing_rate=(self.rows - present) / self.rows if self.rows else 0.0,
            out_of_range_rate=0.0,  # a label outside the classes makes its record malformed
            class_shares=_shares(self.names, self.counts),
            baseline_class_shares=_shares(self.names, self.reference),
        )
        if present < limits.min_samples or reference < limits.min_samples:
            result.status = INSUFFICIENT
            result.reasons.append(f"{present} samples < minimum {limits.min_samples}")
            return result
        result.psi = psi_from_counts(self.reference / reference, self.counts)
        chi = chi_square_test(self.reference / reference, self.counts)
        result.chi_square_statistic, result.chi_square_p_value = chi.statistic, chi.p_value
        _verdict(result, limits)
        return result


def _shares(names: Sequence[str], counts: np.ndarray) -> dict[str, float]:
    total = max(int(counts.sum()), 1)
    return {name: float(count) / total for name, count in zip(names, counts, strict=True)}


def compare_distribution(
    name: str, baseline: np.ndarray, current: np.ndarray, spec: FeatureSpec | None, limits: Thresholds
) -> FeatureDrift:
    """Drift of one column; NaNs are missing values and excluded from the distribution tests."""
    stats = ColumnStats(baseline, spec, limits, Reservoir(max(current.size, 1), np.random.default_rng(0)))
    stats.add(np.asarray(current, dtype=float))
    return stats.result(name)


def row_values(instance: Any, names: Sequence[str]) -> list[float] | None:
    """One instance in schema order (objects by feature name), or None for a list of another width."""
    if isinstance(instance, dict):
        return [to_float(instance.get(name)) for name in names]
    if len(instance) == len(names):
        # to_float inlined for finite floats, the common case (30 values a row, millions of rows a window).
        return [value if type(value) is float and value - value == 0.0 else to_float(value) for value in instance]
    return None


def prediction_stats(
    baseline: Baseline, limits: Thresholds, reservoir_size: int, rng: np.random.Generator
) -> ColumnStats | ClassStats | None:
    """The prediction-drift statistics of the baseline's task: binary P(positive) in [0, 1] and the regression
    value (unbounded) as a column like a feature's (PSI on baseline quantile bins, KS); multiclass the
    predicted-class distribution. None without a baseline_predictions.csv."""
    scores = baseline.prediction_scores
    if scores is None:
        return None
    if baseline.output.task == MULTICLASS:
        return ClassStats(scores, baseline.output, limits)
    bounds = (None, None) if baseline.output.task == REGRESSION else (0.0, 1.0)
    return ColumnStats(scores, FeatureSpec(PREDICTION_KEY, *bounds), limits, Reservoir(reservoir_size, rng))


class VersionStream:
    """One model version's rows compared with its baseline as they stream by: rows are buffered CHUNK_ROWS at a
    time, then folded into per-column statistics, so memory stays fixed however many rows the window holds."""

    def __init__(
        self,
        baseline: Baseline,
        thresholds: ThresholdConfig,
        probability_of: str,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)  # seeded: a retried run reports the same statistics
        self.names = baseline.feature_names
        self.probability_of = probability_of
        self.columns = [
            ColumnStats(baseline.values[:, i], spec, thresholds.for_feature(spec.name), Reservoir(reservoir_size, rng))
            for i, spec in enumerate(baseline.features)
        ]
        self.output = baseline.output
        self.prediction = prediction_stats(baseline, thresholds.for_feature(PREDICTION_KEY), reservoir_size, rng)
        self.rows = self.mismatched = 0
        self._values: list[list[float]] = []
        self._scores: list[float] = []

    def add(self, row: CapturedRow) -> None:
        self.rows += 1
        values = row_values(row.instance, self.names)
        if values is None:
            self.mismatched += 1
        else:
            self._values.append(values)
        if self.prediction is not None:
            # Every row's prediction, also of rows of the wrong width: the response is still the model's.
            self._scores.append(self._score(row.prediction))
        if len(self._values) >= CHUNK_ROWS or len(self._scores) >= CHUNK_ROWS:
            self.flush()

    def _score(self, prediction: Prediction | None) -> float:
        if self.output.task == BINARY and self.output.positive_label == 1:
            return positive_class_score(prediction, self.probability_of)  # the hot path: millions of rows a window
        reading = self.output.read(prediction, self.probability_of)
        if self.output.task == MULTICLASS:
            return -1.0 if reading.label is None else float(reading.label)
        return reading.score

    def flush(self) -> None:
        if self._values:
            matrix = np.array(self._values, dtype=float).reshape(len(self._values), len(self.names))
            for i, column in enumerate(self.columns):
                column.add(matrix[:, i])
            self._values.clear()
        if self._scores and self.prediction is not None:
            scores = np.array(self._scores, dtype=float)
            if isinstance(self.prediction, ClassStats):
                self.prediction.add(scores.astype(np.int64))
            else:
                self.prediction.add(scores)
            self._scores.clear()

    def finish(self) -> tuple[list[FeatureDrift], FeatureDrift | None, int]:
        """Per-feature drift, prediction-score drift (None without a score baseline), schema mismatches."""
        self.flush()
        features = [column.result(name) for name, column in zip(self.names, self.columns, strict=True)]
        prediction = self.prediction.result(PREDICTION_KEY) if self.prediction is not None else None
        return features, prediction, self.mismatched


def compare_version(
    baseline: Baseline, rows: Iterable[CapturedRow], thresholds: ThresholdConfig, probability_of: str
) -> tuple[list[FeatureDrift], FeatureDrift | None, int]:
    """Per-feature drift, prediction-score drift (None without a score baseline), schema mismatches."""
    stream = VersionStream(baseline, thresholds, probability_of)
    for row in rows:
        stream.add(row)
    return stream.finish()
