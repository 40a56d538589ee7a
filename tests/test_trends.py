"""Trend classification checked against a plain Mann-Kendall test and Theil-Sen written here."""

from __future__ import annotations

import json
import math
from itertools import combinations
from statistics import median

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from exporter.analysis.trends import TrendResult, classify_trend
from exporter.results import to_json

# --- independent reference implementations -------------------------------------------------


def mann_kendall_s(values):
    """S = sum of sign(x_j - x_i) over all pairs i < j."""
    return sum((b > a) - (b < a) for a, b in combinations(values, 2))


def inversion_counts(n):
    """counts[k] = number of permutations of n items with exactly k inversions (Mahonian)."""
    counts = [1]
    for size in range(2, n + 1):
        grown = [0] * (len(counts) + size - 1)
        for inversions, count in enumerate(counts):
            for extra in range(size):  # the new largest item can create 0..size-1 inversions
                grown[inversions + extra] += count
        counts = grown
    return counts


def mann_kendall_p_exact(values):
    """Two-sided exact p for an untied series: S = pairs - 2 * inversions under H0."""
    n = len(values)
    pairs = n * (n - 1) // 2
    s_observed = abs(mann_kendall_s(values))
    counts = inversion_counts(n)
    extreme = sum(c for d, c in enumerate(counts) if abs(pairs - 2 * d) >= s_observed)
    return extreme / math.factorial(n)


def mann_kendall_p_normal(values):
    """Two-sided normal-approximation p with the tie-corrected variance of S."""
    n = len(values)
    tie_sizes = [values.count(v) for v in set(values)]
    variance = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in tie_sizes)) / 18
    return 2 * norm.sf(abs(mann_kendall_s(values)) / math.sqrt(variance))


def mann_kendall_p(values):
    """The p the module promises: exact without ties, normal approximation with them."""
    untied = len(set(values)) == len(values)
    return mann_kendall_p_exact(values) if untied else mann_kendall_p_normal(values)


def theil_sen(values):
    """Median pairwise slope, and the line's value at the first point (median intercept)."""
    points = list(enumerate(values))
    slope = median((yj - yi) / (xj - xi) for (xi, yi), (xj, yj) in combinations(points, 2))
    start = median(values) - slope * median(range(len(values)))
    return slope, start


def reference_relative_change(values):
    slope, start = theil_sen(values)
    base = start if start > 0 else median(values)
    return slope * (len(values) - 1) / base


def assert_matches_reference(result: TrendResult, values):
    assert result.n_points == len(values)
    assert result.p_value == pytest.approx(mann_kendall_p(values), rel=1e-9, abs=1e-12)
    assert result.slope == pytest.approx(theil_sen(values)[0], rel=1e-12)
    assert result.relative_change == pytest.approx(reference_relative_change(values), rel=1e-12)


# --- named cases ---------------------------------------------------------------------------


def test_reference_exact_distribution_is_sane():
    # Sanity of the test's own helper: n! permutations in total, symmetric.
    counts = inversion_counts(6)
    assert sum(counts) == math.factorial(6)
    assert counts == counts[::-1]


def test_clear_rise_is_up():
    values = [20, 23, 22, 27, 31, 30, 36, 41, 40, 47]
    result = classify_trend(values)
    assert result.label == "up"
    assert result.p_value < 0.05
    assert result.relative_change > 0.10
    assert_matches_reference(result, values)


def test_clear_fall_is_down():
    values = [90, 84, 86, 75, 70, 72, 61, 58, 52]
    result = classify_trend(values)
    assert result.label == "down"
    assert result.relative_change < -0.10
    assert_matches_reference(result, values)


def test_flat_noisy_series_is_stable():
    values = [50, 53, 48, 51, 49, 52, 47, 50, 54, 49]
    result = classify_trend(values)
    assert result.label == "stable"
    assert result.p_value >= 0.05
    assert_matches_reference(result, values)


def test_significant_but_tiny_change_is_stable():
    # Perfectly monotonic (p = 2/8!) but only +7% over the window.
    values = [100, 101, 102, 103, 104, 105, 106, 107]
    result = classify_trend(values)
    assert result.p_value == pytest.approx(2 / math.factorial(8))
    assert result.relative_change == pytest.approx(0.07)
    assert result.label == "stable"


def test_large_but_not_significant_change_is_stable():
    values = [10, 40, 12, 35, 9, 38, 14, 30]
    result = classify_trend(values)
    assert abs(result.relative_change) >= 0.10
    assert result.p_value >= 0.05
    assert result.label == "stable"
    assert_matches_reference(result, values)


def test_ties_use_tie_corrected_normal_approximation():
    values = [10, 10, 12, 12, 15, 15, 18, 20, 20, 25]
    result = classify_trend(values)
    assert result.label == "up"
    assert_matches_reference(result, values)


def test_constant_series_is_stable_with_p_one():
    result = classify_trend([12] * 10)
    assert (result.label, result.p_value, result.relative_change, result.slope) == (
        "stable", 1.0, 0.0, 0.0,
    )
    json.dumps(to_json(result.detail()), allow_nan=False)


def test_too_few_points_is_insufficient():
    result = classify_trend([10, 20, 30, 40, 50])
    assert result == TrendResult("insufficient_data", None, None, None, 5)


def test_low_volume_is_insufficient():
    result = classify_trend([0, 1, 2, 3, 4, 5, 6, 7])  # median 3.5 < 5
    assert result.label == "insufficient_data"
    assert to_json(result.detail()) == {
        "p_value": None, "relative_change": None, "slope": None, "n_points": 8,
    }


def test_non_positive_fitted_start_falls_back_to_median():
    values = [0, 0, 0, 0, 10, 20, 30, 40]  # median exactly 5: just enough volume
    slope, start = theil_sen(values)
    assert start <= 0  # the case the guard exists for
    result = classify_trend(values)
    assert result.relative_change == pytest.approx(slope * 7 / 5.0)
    assert result.label == "up"
    assert_matches_reference(result, values)


def test_thresholds_are_parameters():
    values = [100, 101, 102, 103, 104, 105, 106, 107]
    assert classify_trend(values, min_relative_change=0.05).label == "up"
    assert classify_trend([3, 4, 5, 6, 7, 8, 9, 10], min_median=7.0).label == "insufficient_data"
    assert classify_trend([10, 20, 30, 40, 50], min_points=5).label == "up"


def test_detail_shape():
    detail = to_json(classify_trend([20, 23, 22, 27, 31, 30, 36, 41, 40, 47]).detail())
    assert set(detail) == {"p_value", "relative_change", "slope", "n_points"}
    assert isinstance(detail["n_points"], int)
    assert all(isinstance(detail[k], float) for k in ("p_value", "relative_change", "slope"))
    json.dumps(detail, allow_nan=False)


@pytest.mark.parametrize("bad", [[1, 2, float("nan"), 4, 5, 6], [1, 2, float("inf"), 4, 5, 6]])
def test_non_finite_values_are_rejected(bad):
    with pytest.raises(ValueError):
        classify_trend(bad)


# --- property test on random series ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), min_size=6, max_size=12))
def test_random_series_match_reference(values):
    result = classify_trend(values)
    if median(values) < 5:
        assert result.label == "insufficient_data"
        return
    if len(set(values)) == 1:
        assert result.label == "stable" and result.p_value == 1.0
        return
    assert_matches_reference(result, values)
    called = mann_kendall_p(values) < 0.05 and abs(reference_relative_change(values)) >= 0.10
    expected = ("up" if reference_relative_change(values) > 0 else "down") if called else "stable"
    assert result.label == expected
