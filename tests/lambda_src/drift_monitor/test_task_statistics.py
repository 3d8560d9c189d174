"""Prediction drift and ground-truth quality per task (issue 16), on synthetic predictions.

The streamed quality metrics are the build's own definitions: they equal model_container.evaluation.metrics (what
the card's holdout_metrics and the model gate use) on the same labels and predictions, whatever the chunking.
Prediction drift: binary and regression compare a column of scores (PSI on the baseline's quantile bins and KS),
multiclass the predicted-class distribution (PSI over the classes and chi-square).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from drift_engine import feature_drift
from drift_engine.baseline_store import Baseline, FeatureSpec
from drift_engine.capture_records import CapturedRow
from drift_engine.feature_drift import ALARM, INSUFFICIENT, ClassDrift, VersionStream
from drift_engine.ground_truth import QualityStream, parse_label_lines
from drift_engine.model_output import BINARY, MULTICLASS, REGRESSION, ModelOutput
from drift_engine.payload_decoding import Prediction
from drift_engine.settings import ThresholdConfig

from model_container.card import METRICS
from model_container.evaluation import metrics as build_metrics

RNG = np.random.default_rng(16)
NAMES = ("setosa", "versicolor", "virginica", "other")
OUTPUTS = {
    BINARY: ModelOutput(BINARY, ("no", "yes"), 1),
    MULTICLASS: ModelOutput(MULTICLASS, NAMES, 0),
    REGRESSION: ModelOutput(REGRESSION, (), 0),
}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def served(task: str, rows: int, skew: float = 0.0) -> tuple[list[Prediction], dict[str, np.ndarray], np.ndarray]:
    """(served predictions as the contract shapes them, the same as evaluation.metrics takes them, the truth)."""
    if task == REGRESSION:
        truth = RNG.normal(150, 50, rows)
        values = np.round(truth + RNG.normal(skew, 30, rows), 6)
        return [Prediction(None, None, "1", value=float(v)) for v in values], {"value": values}, truth
    classes = OUTPUTS[task].classes
    probabilities = np.round(_softmax(RNG.normal(0, 1.5, (rows, classes)) + skew * np.arange(classes)), 6)
    labels = probabilities.argmax(axis=1)
    truth = np.where(RNG.uniform(size=rows) < 0.7, labels, RNG.integers(0, classes, rows))
    if task == BINARY:
        served_rows = [Prediction(int(y), float(p[1]), "1") for y, p in zip(labels, probabilities, strict=True)]
    else:
        served_rows = [
            Prediction(int(y), None, "1", probabilities=dict(zip(NAMES, map(float, p), strict=True)))
            for y, p in zip(labels, probabilities, strict=True)
        ]
    return served_rows, {"label": labels, "probabilities": probabilities}, truth


@pytest.mark.parametrize("task", list(OUTPUTS))
@pytest.mark.parametrize("records", [1, 7], ids=["one-record", "seven-records"])
def test_streamed_quality_equals_the_builds_metrics(task: str, records: int) -> None:
    predictions, evaluated, truth = served(task, 700)
    rows = [CapturedRow([0.0], p, f"r{i % records}") for i, p in enumerate(predictions)]
    by_key: dict[str, list[tuple[CapturedRow, float]]] = {}
    for row, y in zip(rows, truth.tolist(), strict=True):
        by_key.setdefault(row.join_key or "", []).append((row, y))
    lines = [("g:1", json.dumps({"eventId": key, "labels": [y for _, y in pairs]})) for key, pairs in by_key.items()]
    stream = QualityStream(parse_label_lines(lines), "positive_class", output=OUTPUTS[task])
    for key, pairs in by_key.items():
        stream.add_record(key, [row for row, _ in pairs])
    result = stream.result(min_labels=20)

    expected = build_metrics(task, truth, evaluated, list(OUTPUTS[task].label_names))
    assert (result.status, result.task, result.joined_labels) == ("ok", task, 700)
    assert set(result.metrics) == set(METRICS[task])  # the card's metric names, no other
    for name in METRICS[task]:
        assert result.metrics[name] == pytest.approx(expected[name], abs=2e-6), name
    if task == MULTICLASS:
        assert result.class_recall == {n: pytest.approx(expected[f"recall.{n}"], abs=2e-6) for n in NAMES}


def test_a_class_index_the_model_does_not_have_is_counted_not_scored() -> None:
    predictions, _, _ = served(MULTICLASS, 30)
    rows = [CapturedRow([0.0], p, f"k{i}") for i, p in enumerate(predictions)]
    lines = [("g:1", json.dumps({"eventId": f"k{i}", "label": 9 if i < 5 else 0})) for i in range(30)]
    stream = QualityStream(parse_label_lines(lines), "positive_class", output=OUTPUTS[MULTICLASS])
    for row in rows:
        stream.add_record(row.join_key, [row])
    result = stream.result(min_labels=20)
    assert (result.joined_labels, result.invalid_labels) == (25, 5)


def _baseline(task: str, rows: int = 2000) -> Baseline:
    _, evaluated, _ = served(task, rows)
    scores = evaluated["value"] if task == REGRESSION else evaluated["probabilities"]
    column = scores[:, 1] if task == BINARY else scores
    specs = (FeatureSpec("x", None, None),)
    return Baseline("1", specs, RNG.normal(0, 1, (rows, 1)), column, "sha256:x", output=OUTPUTS[task])


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_prediction_drift_per_task(task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_drift, "CHUNK_ROWS", 97)  # several chunks: the streamed counts add up
    baseline = _baseline(task)
    verdicts = {}
    for skew in (0.0, 60.0 if task == REGRESSION else 2.0):
        stream = VersionStream(baseline, ThresholdConfig(), "positive_class", seed=1)
        for prediction in served(task, 600, skew)[0]:
            stream.add(CapturedRow([0.0], prediction, None))
        _, prediction_drift, _ = stream.finish()
        assert prediction_drift is not None and prediction_drift.samples == 600
        verdicts[skew] = prediction_drift
    unchanged, shifted = verdicts.values()
    assert unchanged.status != ALARM and unchanged.psi < 0.1
    assert shifted.status == ALARM and shifted.psi >= 0.25
    if task == MULTICLASS:
        assert isinstance(shifted, ClassDrift) and shifted.ks_statistic is None
        assert shifted.chi_square_p_value is not None and shifted.chi_square_p_value < 1e-6
        assert list(shifted.class_shares) == list(NAMES) and sum(shifted.class_shares.values()) == pytest.approx(1)
        # The skew favours the later classes: their share grows against the baseline's.
        assert shifted.class_shares[NAMES[-1]] > shifted.baseline_class_shares[NAMES[-1]]
    else:
        assert shifted.ks_p_value is not None and shifted.ks_p_value < 1e-6
        assert unchanged.out_of_range_rate == 0.0


def test_multiclass_rows_without_a_prediction_are_missing_and_few_rows_are_insufficient() -> None:
    stream = VersionStream(_baseline(MULTICLASS), ThresholdConfig(), "positive_class")
    predictions = served(MULTICLASS, 40)[0]
    for prediction in predictions:
        stream.add(CapturedRow([0.0], prediction, None))
    stream.add(CapturedRow([0.0], None, None))  # a request captured without its response
    _, drift, _ = stream.finish()
    assert drift is not None and (drift.status, drift.samples) == (INSUFFICIENT, 40)
    assert drift.missing_rate == pytest.approx(1 / 41)


def test_a_regression_value_is_unbounded_and_binary_probabilities_are_not() -> None:
    regression = VersionStream(_baseline(REGRESSION), ThresholdConfig(), "positive_class")
    binary = VersionStream(_baseline(BINARY), ThresholdConfig(), "positive_class")
    for value in np.linspace(-500.0, 900.0, 100):
        regression.add(CapturedRow([0.0], Prediction(None, None, "1", value=float(value)), None))
        binary.add(CapturedRow([0.0], Prediction(1, float(value), "1"), None))
    assert regression.finish()[1].out_of_range_rate == 0.0  # type: ignore[union-attr]
    assert binary.finish()[1].out_of_range_rate > 0.5  # type: ignore[union-attr]
