"""The drift job streams the window (issue 14, "A drift job that does not run out of memory as traffic grows"):
per-feature counts on the baseline's bins and a fixed-size uniform reservoir, so memory does not grow with the
window, and a window smaller than the reservoir gets exactly the statistics of an all-in-memory comparison."""

from __future__ import annotations

import numpy as np
import pytest
from drift_engine import feature_drift
from drift_engine.baseline_store import Baseline, FeatureSpec
from drift_engine.capture_records import CapturedRow
from drift_engine.drift_statistics import (
    Reservoir,
    ks_test,
    missing_rate,
    out_of_range_rate,
    population_stability_index,
)
from drift_engine.feature_drift import VersionStream, compare_distribution, positive_class_score
from drift_engine.payload_decoding import Prediction
from drift_engine.settings import ThresholdConfig, Thresholds

RNG = np.random.default_rng(7)


def test_the_reservoir_holds_everything_up_to_its_size_then_a_fixed_number() -> None:
    reservoir = Reservoir(100, np.random.default_rng(1))
    reservoir.add(np.arange(60.0))
    reservoir.add(np.arange(60.0, 90.0))
    assert reservoir.sample().tolist() == list(np.arange(90.0))  # the whole stream, in order
    for start in range(90, 10_000, 333):
        reservoir.add(np.arange(float(start), float(min(start + 333, 10_000))))
    assert reservoir.seen == 10_000 and reservoir.sample().size == 100
    assert len(set(reservoir.sample().tolist())) == 100  # distinct values: no value kept twice


def test_the_reservoir_is_a_uniform_sample_whatever_the_chunking() -> None:
    rng = np.random.default_rng(3)
    kept = np.zeros(1000)
    trials = 600
    for _ in range(trials):
        reservoir = Reservoir(100, rng)
        start = 0
        while start < 1000:  # chunks of random size, some larger than the reservoir
            size = int(rng.integers(1, 250))
            reservoir.add(np.arange(start, min(start + size, 1000), dtype=float))
            start += size
        kept[reservoir.sample().astype(int)] += 1
    shares = kept / trials  # each value should be kept with probability 100/1000
    for part in np.split(shares, 10):  # early, middle and late values alike
        assert part.mean() == pytest.approx(0.1, abs=0.012)


def _baseline(features: int = 3) -> Baseline:
    values = RNG.normal(10, 2, size=(800, features))
    specs = tuple(FeatureSpec(f"f{i}", 4.0, 16.0) for i in range(features))
    return Baseline("1", specs, values, RNG.uniform(0, 1, 800), "sha256:x")


def test_streamed_statistics_equal_the_whole_column_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_drift, "CHUNK_ROWS", 37)  # many chunk boundaries
    baseline = _baseline()
    current = RNG.normal(10.4, 2.2, size=(3000, 3))
    current[::17, 1] = np.nan
    current[::23, 2] = 40.0  # out of range
    rows = [CapturedRow(list(row), Prediction(1, float(p), "1"), f"k{i}")
            for i, (row, p) in enumerate(zip(current.tolist(), RNG.uniform(0, 1, 3000), strict=True))]  # fmt: skip
    rows.append(CapturedRow([1.0, 2.0], Prediction(0, 0.3, "1"), "short"))  # wrong width: counted, score kept
    limits = Thresholds()
    stream = VersionStream(baseline, ThresholdConfig(), "positive_class", reservoir_size=5000)
    for row in rows:
        stream.add(row)
    features, prediction, mismatched = stream.finish()

    assert mismatched == 1
    for i, result in enumerate(features):
        whole = compare_distribution(f"f{i}", baseline.values[:, i], current[:, i], baseline.features[i], limits)
        assert result.as_dict() == whole.as_dict()
    for i, result in enumerate(features):  # the all-in-memory statistics the job computed before streaming
        column, reference, spec = current[:, i], baseline.values[:, i], baseline.features[i]
        present = column[~np.isnan(column)]
        assert result.psi == population_stability_index(reference, present, limits.psi_bins)
        assert (result.ks_statistic, result.ks_p_value) == tuple(vars(ks_test(reference, present)).values())
        assert result.missing_rate == missing_rate(column)
        assert result.out_of_range_rate == out_of_range_rate(column, spec.minimum, spec.maximum)
    scores = np.array([positive_class_score(row.prediction, "positive_class") for row in rows])
    assert prediction is not None and baseline.prediction_scores is not None
    whole = compare_distribution("__prediction__", baseline.prediction_scores, scores,
                                 FeatureSpec("__prediction__", 0.0, 1.0), limits)  # fmt: skip
    assert prediction.as_dict() == whole.as_dict()


def test_beyond_the_reservoir_psi_and_rates_stay_exact_and_ks_uses_the_sample() -> None:
    baseline = _baseline(1)
    current = RNG.normal(13, 2, size=(20_000, 1))
    stream = VersionStream(baseline, ThresholdConfig(), "positive_class", reservoir_size=1000)
    for row in current.tolist():
        stream.add(CapturedRow(row, None, None))
    (result,), _, _ = stream.finish()
    whole = compare_distribution("f0", baseline.values[:, 0], current[:, 0], baseline.features[0], Thresholds())
    assert (result.samples, result.psi, result.out_of_range_rate) == (whole.samples, whole.psi, whole.out_of_range_rate)
    assert result.status == whole.status == "alarm"
    assert result.ks_statistic == pytest.approx(whole.ks_statistic, abs=0.06)  # a 1,000-value sample of 20,000
