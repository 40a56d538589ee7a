"""The Mann-Kendall p-value and Theil-Sen fit against scipy.stats on random series.

exporter.analysis.kendall rewrites scipy.stats.kendalltau (method="auto", two-sided) and
scipy.stats.theilslopes (method="separate") against time so the service need not import
scipy.stats; here both are compared with scipy itself: exact and asymptotic regimes, with and
without ties, at the exact distribution's edges (no or one discordant pair, half of the pairs).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from exporter.analysis.kendall import mann_kendall_p_value, theil_sen


def scipy_p_value(values) -> float:
    return float(stats.kendalltau(values, np.arange(len(values), dtype=float)).pvalue)


def scipy_theil_sen(values) -> tuple[float, float]:
    slope, intercept, _, _ = stats.theilslopes(values, np.arange(len(values), dtype=float))
    return float(slope), float(intercept)


series = st.integers(3, 60).flatmap(lambda n: st.lists(
    st.one_of(st.integers(0, 6).map(float),  # few values: many ties (normal approximation)
              st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(series)
def test_p_value_and_fit_match_scipy(values):
    values = np.array(values)
    expected = scipy_p_value(values)
    if math.isnan(expected):
        assert math.isnan(mann_kendall_p_value(values))
    else:
        assert mann_kendall_p_value(values) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert theil_sen(values) == pytest.approx(scipy_theil_sen(values), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("n", [3, 4, 12, 33, 34, 52])
def test_the_exact_distribution_at_its_edges(n):
    rising = np.arange(n, dtype=float) * 1.5
    one_swap = rising.copy()
    one_swap[[0, 1]] = one_swap[[1, 0]]
    for values in (rising, rising[::-1], one_swap, one_swap[::-1]):
        assert mann_kendall_p_value(values) == pytest.approx(scipy_p_value(values), rel=1e-12)


def test_half_of_the_pairs_discordant_is_p_one():
    values = np.array([2.0, 4.0, 1.0, 3.0])  # 3 of 6 pairs discordant: 4c = n(n-1)
    assert mann_kendall_p_value(values) == scipy_p_value(values) == 1.0


def test_random_series_over_both_regimes():
    rng = np.random.default_rng(7)
    for n in (5, 20, 33, 34, 45):
        for _ in range(40):
            values = np.round(rng.normal(50, 10, n) + rng.normal(0, 1) * np.arange(n), rng.integers(0, 3))
            assert mann_kendall_p_value(values) == pytest.approx(scipy_p_value(values), rel=1e-12, abs=1e-15)
            assert theil_sen(values) == pytest.approx(scipy_theil_sen(values), rel=1e-12, abs=1e-9)


def test_a_constant_series_has_no_p_value_and_a_flat_fit():
    assert math.isnan(mann_kendall_p_value(np.full(8, 3.0)))
    assert theil_sen(np.full(8, 3.0)) == (0.0, 3.0)


@pytest.mark.slow  # a fresh interpreter importing the service
def test_the_service_and_its_demo_do_not_import_scipy_stats():
    # The reason this module exists: scipy.stats costs ~47 MB of resident memory (issue 9).
    code = ("import sys, exporter.cli, api.app, api.dashboard, api.export, exporter.demo.runner, "
            "exporter.demo.experimentation, exporter.demo.feedback, exporter.demo.plausible; "
            "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.strip() == "[]"
