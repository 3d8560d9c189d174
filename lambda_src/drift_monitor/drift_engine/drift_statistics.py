"""Distribution-shift statistics: PSI on baseline-quantile bins, two-sample KS, data-quality rates."""

from dataclasses import dataclass

import numpy as np
from scipy import stats

# Floor for a bin's share: an empty bin would otherwise make ln(a/e) infinite.
PSI_EPSILON = 1e-4


def quantile_bin_edges(baseline: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges splitting the baseline into ~equal-count bins; outer bins are open-ended.

    Repeated quantiles (discrete or constant features) are merged; a constant baseline still gets
    a bin for values below, at, and above its value so a shift away from it is visible.
    """
    interior = np.unique(np.quantile(baseline, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    if interior.size == 0 or np.ptp(baseline) == 0:
        value = float(baseline[0])
        interior = np.array([value, np.nextafter(value, np.inf)])
    return interior


def bin_shares(values: np.ndarray, interior_edges: np.ndarray) -> np.ndarray:
    """Share of values per bin; bin i holds edges[i-1] <= x < edges[i]."""
    counts = np.bincount(np.searchsorted(interior_edges, values, side="right"), minlength=interior_edges.size + 1)
    return counts / max(values.size, 1)


def bin_counts(values: np.ndarray, interior_edges: np.ndarray) -> np.ndarray:
    """Count of values per bin (bin i holds edges[i-1] <= x < edges[i]); summed chunk by chunk when streaming."""
    return np.bincount(np.searchsorted(interior_edges, values, side="right"), minlength=interior_edges.size + 1)


def psi_from_counts(expected_shares: np.ndarray, counts: np.ndarray) -> float:
    """PSI of current bin counts against the baseline's bin shares, both floored at PSI_EPSILON."""
    expected = np.clip(expected_shares, PSI_EPSILON, None)
    actual = np.clip(counts / max(int(counts.sum()), 1), PSI_EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def population_stability_index(baseline: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI = sum((a - e) * ln(a / e)) over baseline-quantile bins, shares floored at PSI_EPSILON."""
    edges = quantile_bin_edges(baseline, bins)
    return psi_from_counts(bin_shares(baseline, edges), bin_counts(current, edges))


class Reservoir:
    """A uniform random sample of at most `size` of the values offered so far, in fixed memory.

    Vitter's Algorithm R, applied a chunk at a time: value number t (0-based) replaces slot j = randint(0..t) when
    j < size, later values overwriting earlier ones. Until `size` values have been offered it holds all of them,
    in order, so a small window's sample is the window itself. With `width`, each value is a row of that many
    numbers (kept or dropped together)."""

    def __init__(self, size: int, rng: np.random.Generator, width: int | None = None) -> None:
        self.size, self.rng, self.seen = size, rng, 0
        self._values = np.empty(size if width is None else (size, width), dtype=float)

    def add(self, values: np.ndarray) -> None:
        count = values.shape[0]
        fill = min(max(self.size - self.seen, 0), count)
        self._values[self.seen : self.seen + fill] = values[:fill]
        rest = values[fill:]
        if rest.shape[0]:
            slots = self.rng.integers(0, self.seen + fill + np.arange(rest.shape[0]) + 1)
            chosen = slots < self.size
            slots, kept = slots[chosen], rest[chosen]
            # Where one chunk picks a slot twice, the later value wins, as in the one-at-a-time algorithm.
            unique_slots, reversed_first = np.unique(slots[::-1], return_index=True)
            self._values[unique_slots] = kept[slots.size - 1 - reversed_first]
        self.seen += count

    def sample(self) -> np.ndarray:
        return self._values[: min(self.seen, self.size)]


@dataclass(frozen=True)
class KsResult:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""

    statistic: float
    p_value: float


def ks_test(baseline: np.ndarray, current: np.ndarray) -> KsResult:
    result = stats.ks_2samp(baseline, current)
    return KsResult(statistic=float(result.statistic), p_value=float(result.pvalue))


@dataclass(frozen=True)
class ChiSquareResult:
    """Pearson chi-square goodness-of-fit statistic and p-value of observed counts against expected shares."""

    statistic: float
    p_value: float


def chi_square_test(expected_shares: np.ndarray, counts: np.ndarray) -> ChiSquareResult:
    """Observed class counts against the baseline's class shares. Shares are floored at PSI_EPSILON (a class the
    baseline never predicts would make the statistic infinite) and renormalised, as chisquare needs equal sums."""
    shares = np.clip(np.asarray(expected_shares, dtype=float), PSI_EPSILON, None)
    expected = shares / shares.sum() * counts.sum()
    result = stats.chisquare(counts.astype(float), expected)
    return ChiSquareResult(statistic=float(result.statistic), p_value=float(result.pvalue))


def missing_rate(values: np.ndarray) -> float:
    return float(np.mean(np.isnan(values))) if values.size else 0.0


def out_of_range_rate(values: np.ndarray, minimum: float | None, maximum: float | None) -> float:
    """Share of present values outside the schema range (missing values are not counted here)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return 0.0
    outside = np.zeros(present.size, dtype=bool)
    if minimum is not None:
        outside |= present < minimum
    if maximum is not None:
        outside |= present > maximum
    return float(np.mean(outside))


def roc_auc(labels: np.ndarray, scores: np.ndarray, positive: int = 1) -> float | None:
    """ROC AUC of scores for `positive` via the Mann-Whitney rank-sum identity (ties get average ranks); None if
    one class."""
    positives = labels == positive
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
