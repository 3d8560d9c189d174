import math

import numpy as np
import pytest
from drift_engine.baseline_store import Baseline, FeatureSpec, parse_baseline_csv, parse_feature_schema
from drift_engine.capture_records import CapturedRow
from drift_engine.feature_drift import (
    ALARM,
    INSUFFICIENT,
    OK,
    WARN,
    compare_distribution,
    compare_version,
    positive_class_score,
    rows_to_matrix,
)
from drift_engine.payload_decoding import Prediction
from drift_engine.settings import Thresholds, parse_thresholds
from drift_test_data import FEATURES, WIDTH, metadata, sample_features, to_csv

RNG = np.random.default_rng(11)
LIMITS = Thresholds(min_samples=30)


def test_same_distribution_is_ok_and_shift_is_alarm() -> None:
    baseline = RNG.normal(10, 1, 1000)
    spec = FeatureSpec("x", 5.0, 15.0)
    assert compare_distribution("x", baseline, RNG.normal(10, 1, 400), spec, LIMITS).status == OK
    shifted = compare_distribution("x", baseline, RNG.normal(11.5, 1, 400), spec, LIMITS)
    assert shifted.status == ALARM
    assert shifted.psi is not None and shifted.psi > 0.25
    assert any("psi" in reason for reason in shifted.reasons)


def test_ks_rejection_alone_only_warns() -> None:
    result = compare_distribution("x", RNG.normal(0, 1, 20000), RNG.normal(0.15, 1, 20000), None, LIMITS)
    assert result.ks_p_value is not None and result.ks_p_value < 0.01
    assert result.psi is not None and result.psi < 0.1
    assert result.status == WARN


def test_too_few_samples_is_insufficient_data_not_drift() -> None:
    result = compare_distribution("x", RNG.normal(0, 1, 500), RNG.normal(5, 1, 10), None, LIMITS)
    assert result.status == INSUFFICIENT
    assert result.psi is None


def test_missing_and_out_of_range_values_warn() -> None:
    current = RNG.normal(10, 1, 200)
    current[:40] = np.nan
    current[40:60] = 100.0
    result = compare_distribution("x", RNG.normal(10, 1, 1000), current, FeatureSpec("x", 0, 20), LIMITS)
    assert result.missing_rate == pytest.approx(0.2)
    assert result.out_of_range_rate == pytest.approx(20 / 160)
    assert result.status in (WARN, ALARM)


def test_rows_to_matrix_maps_objects_by_name_and_drops_wrong_width_lists() -> None:
    rows = [
        CapturedRow({"b": 2, "a": "1"}, None, None),
        CapturedRow([3, None], None, None),
        CapturedRow([1, 2, 3], None, None),
        CapturedRow({"a": 1}, None, None),
    ]
    matrix, mismatched = rows_to_matrix(rows, ["a", "b"])
    assert mismatched == 1
    np.testing.assert_array_equal(matrix, [[1, 2], [3, np.nan], [1, np.nan]])


def test_positive_class_score_depends_on_probability_meaning() -> None:
    said_no = Prediction(label=0, probability=0.9, model_version="1")
    assert positive_class_score(said_no, "predicted_label") == pytest.approx(0.1)
    assert positive_class_score(said_no, "positive_class") == pytest.approx(0.9)
    assert math.isnan(positive_class_score(None, "predicted_label"))


def test_schema_reader_accepts_key_variants() -> None:
    specs = parse_feature_schema({"features": [{"name": "a", "min": 0, "max": 1}, {"name": "b"}]})
    assert specs == (FeatureSpec("a", 0.0, 1.0), FeatureSpec("b", None, None))
    with pytest.raises(ValueError):
        parse_feature_schema({"feature_schema": {}})


def test_baseline_csv_checks_width_and_skips_header() -> None:
    assert parse_baseline_csv("a,b\n1,2\n3,\n", 2).shape == (2, 2)
    with pytest.raises(ValueError, match="expected 3 columns"):
        parse_baseline_csv("1,2\n", 3)


def test_compare_version_reports_every_schema_feature_and_the_score() -> None:
    values = sample_features(RNG, 600)
    specs = parse_feature_schema(metadata("1.0.0", FEATURES, values))
    scores = RNG.uniform(0, 1, 600)
    baseline = Baseline("1.0.0", specs, parse_baseline_csv(to_csv(values), WIDTH), scores, None)
    current = sample_features(RNG, 300, shift={0: 2.0})
    rows = [
        CapturedRow(list(row), Prediction(1, float(p), "1.0.0"), None)
        for row, p in zip(current, RNG.uniform(0.5, 1, 300), strict=True)
    ]
    features, prediction, mismatched = compare_version(baseline, rows, parse_thresholds(None), "positive_class")
    assert mismatched == 0
    assert [f.feature for f in features] == FEATURES
    assert [f.feature for f in features if f.status == ALARM] == [FEATURES[0]]
    assert prediction is not None and prediction.status == ALARM  # scores moved to [0.5, 1]
