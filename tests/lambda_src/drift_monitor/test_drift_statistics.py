import numpy as np
import pytest
from drift_engine.drift_statistics import (
    ks_test,
    missing_rate,
    out_of_range_rate,
    population_stability_index,
    quantile_bin_edges,
    roc_auc,
)
from hypothesis import given, settings
from hypothesis import strategies as st

RNG = np.random.default_rng(7)


def test_psi_and_ks_see_no_drift_between_samples_of_one_distribution() -> None:
    baseline, current = RNG.normal(0, 1, 5000), RNG.normal(0, 1, 2000)
    assert population_stability_index(baseline, current) < 0.02
    assert ks_test(baseline, current).p_value > 0.01


def test_psi_and_ks_flag_a_one_sd_shift() -> None:
    baseline, current = RNG.normal(0, 1, 5000), RNG.normal(1, 1, 2000)
    assert population_stability_index(baseline, current) > 0.25
    ks = ks_test(baseline, current)
    assert ks.statistic > 0.3
    assert ks.p_value < 1e-10


def test_psi_stays_finite_when_current_leaves_bins_empty() -> None:
    baseline = RNG.uniform(0, 1, 1000)
    current = np.full(200, 0.05)  # everything in the first decile, nine empty bins
    psi = population_stability_index(baseline, current)
    assert np.isfinite(psi)
    assert psi > 1.0


def test_constant_baseline_gets_bins_below_at_and_above_its_value() -> None:
    baseline = np.full(100, 3.0)
    assert quantile_bin_edges(baseline, 10).size == 2
    assert population_stability_index(baseline, np.full(50, 3.0)) == pytest.approx(0.0)
    assert population_stability_index(baseline, np.full(50, 4.0)) > 1.0
    assert population_stability_index(baseline, np.full(50, 2.0)) > 1.0


def test_discrete_baseline_with_repeated_quantiles() -> None:
    baseline = RNG.integers(0, 3, 1000).astype(float)
    assert population_stability_index(baseline, RNG.integers(0, 3, 500).astype(float)) < 0.05
    assert population_stability_index(baseline, np.full(500, 2.0)) > 0.5


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
)
def test_psi_is_never_negative(baseline: list[float], current: list[float]) -> None:
    assert population_stability_index(np.array(baseline), np.array(current)) >= 0.0


def test_missing_and_out_of_range_rates() -> None:
    values = np.array([1.0, np.nan, 5.0, 11.0, -1.0])
    assert missing_rate(values) == pytest.approx(0.2)
    assert out_of_range_rate(values, 0.0, 10.0) == pytest.approx(0.5)  # 2 of 4 present values
    assert out_of_range_rate(values, None, None) == 0.0
    assert out_of_range_rate(np.array([np.nan]), 0.0, 1.0) == 0.0


def test_roc_auc_matches_known_values() -> None:
    # Classic example (scikit-learn docs): AUC 0.75.
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == pytest.approx(1.0)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # ties count half
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.9])) is None


def test_roc_auc_agrees_with_pairwise_definition() -> None:
    labels = RNG.integers(0, 2, 300)
    scores = np.round(RNG.uniform(0, 1, 300) + 0.3 * labels, 2)  # rounded to create ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert roc_auc(labels, scores) == pytest.approx(pairwise)
