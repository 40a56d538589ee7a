"""Experiment statistics checked against independent computations.

References: statsmodels (z-tests, Wald interval, Wilson, Holm, power), scipy (chi-square,
numerical integration of Beta posteriors, root finding), textbook formulas written plainly here,
and the worked numbers of docs/methods.md#experiment-reference-values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from exporter.analysis.experiments import (
    ArmInput,
    ExperimentInput,
    always_valid_p_value,
    analyse_experiments,
    arm_moments,
    bayesian,
    compare_beta_posteriors,
    critical_value,
    difference_test,
    fieller_relative_interval,
    holm_adjust,
    mixing_rho_squared,
    probability_greater,
    required_sample_size,
    sample_ratio_mismatch,
    wald_interval,
)
from exporter.analysis.experiments.frequentist import normal_critical_value
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
analyse_experiments = published(analyse_experiments)


def _pair(x_t, n_t, x_c, n_c):
    return arm_moments([n_t], [x_t]), arm_moments([n_c], [x_c])


def _experiment(*arms, planned=10_000, alpha=0.05, weights=None):
    """An experiment from ``(assignments, conversions)`` pairs; the first is the control."""
    weights = weights or [1.0 / len(arms)] * len(arms)
    return ExperimentInput(
        experiment_id="exp",
        name="Experiment",
        status="running",
        start_date=None,
        end_date=None,
        arms=tuple(
            ArmInput(name="control" if i == 0 else f"v{i}", assignments=n, conversions=x, weight=w)
            for i, ((n, x), w) in enumerate(zip(arms, weights))
        ),
        alpha=alpha,
        planned_n_per_arm=planned,
    )


# --- two-proportion z-tests -------------------------------------------------------------------


def test_reference_two_proportion_z_test():
    treatment, control = _pair(250, 2000, 200, 2000)
    result = difference_test(treatment, control)
    assert result.p_value_pooled[0] == pytest.approx(0.012351, abs=5e-7)
    assert result.p_value[0] == pytest.approx(0.012283, abs=5e-7)
    pooled_z = 0.025 / math.sqrt(0.1125 * 0.8875 * (2 / 2000))
    assert pooled_z == pytest.approx(2.50196, abs=5e-6)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # statsmodels' odds ratio
@pytest.mark.parametrize(
    "x_t, n_t, x_c, n_c",
    [
        (250, 2000, 200, 2000),
        (3, 40, 9, 55),
        (700, 1000, 650, 1200),
        (1, 10_000, 9, 12_000),
        (5, 5, 2, 9),
    ],
)
def test_z_tests_and_wald_interval_match_statsmodels(x_t, n_t, x_c, n_c):
    treatment, control = _pair(x_t, n_t, x_c, n_c)
    result = difference_test(treatment, control)
    counts = (x_t, n_t, x_c, n_c)
    unpooled = sm_proportion.test_proportions_2indep(*counts, method="wald", compare="diff")
    _, pooled_p = sm_proportion.proportions_ztest([x_t, x_c], [n_t, n_c])
    assert result.p_value[0] == pytest.approx(unpooled.pvalue, rel=1e-9)
    assert result.p_value_pooled[0] == pytest.approx(pooled_p, rel=1e-9)
    low, high = sm_proportion.confint_proportions_2indep(*counts, method="wald", compare="diff")
    ours = wald_interval(result.difference, result.standard_error, normal_critical_value(0.05))
    assert ours[0][0] == pytest.approx(low, abs=1e-12)
    assert ours[1][0] == pytest.approx(high, abs=1e-12)


def test_zero_variance_cases():
    both_zero = difference_test(*_pair(0, 500, 0, 500))
    assert both_zero.p_value[0] == 1.0 and both_zero.zero_variance[0]
    # Both rates on the boundary but different: the pooled SE (positive) takes over.
    opposite = difference_test(*_pair(100, 100, 0, 100))
    _, pooled_p = sm_proportion.proportions_ztest([100, 0], [100, 100])
    assert opposite.zero_variance[0]
    assert opposite.p_value[0] == pytest.approx(pooled_p, rel=1e-9)


def test_empty_arm_has_no_test():
    result = difference_test(*_pair(0, 0, 10, 100))
    assert np.isnan(result.p_value[0]) and np.isnan(result.p_value_pooled[0])


# --- Fieller interval for the relative lift ---------------------------------------------------


def _fieller_by_inversion(x_t, n_t, x_c, n_c, c):
    """Invert the Wald test of H0: p_t = r p_c over r; the interval's ends are where |stat| = c."""
    a, b = x_t / n_t, x_c / n_c
    va, vb = a * (1 - a) / n_t, b * (1 - b) / n_c

    def excess(r):
        return (a - r * b) ** 2 / (va + r * r * vb) - c * c

    ratio = a / b
    step = 1e-3
    low = ratio
    while excess(low) < 0:
        low -= step
        step *= 2
    step = 1e-3
    high = ratio
    while excess(high) < 0:
        high += step
        step *= 2
    return (
        optimize.brentq(excess, low, ratio, xtol=1e-14) - 1,
        optimize.brentq(excess, ratio, high, xtol=1e-14) - 1,
    )


@pytest.mark.parametrize(
    "x_t, n_t, x_c, n_c, alpha",
    [
        (250, 2000, 200, 2000, 0.05),
        (30, 300, 20, 310, 0.05),
        (500, 1000, 480, 1000, 0.01),
        (12, 100, 40, 100, 0.1),
    ],
)
def test_fieller_matches_brute_force_inversion(x_t, n_t, x_c, n_c, alpha):
    c = normal_critical_value(alpha)
    low, high, bounded = fieller_relative_interval(*_pair(x_t, n_t, x_c, n_c), c)
    assert bounded[0]
    expected_low, expected_high = _fieller_by_inversion(x_t, n_t, x_c, n_c, c)
    assert low[0] == pytest.approx(expected_low, abs=1e-9)
    assert high[0] == pytest.approx(expected_high, abs=1e-9)


def test_fieller_unbounded_when_control_rate_is_not_distinguishable_from_zero():
    # Control 1/1000: z of the control rate itself ~ 1.0 < 1.96.
    arms = _pair(10, 1000, 1, 1000)
    low, high, bounded = fieller_relative_interval(*arms, normal_critical_value(0.05))
    assert not bounded[0] and np.isnan(low[0]) and np.isnan(high[0])


def test_relative_interval_excludes_zero_exactly_when_significant():
    rng = np.random.default_rng(7)
    n_t = rng.integers(100, 5000, 400)
    n_c = rng.integers(100, 5000, 400)
    x_t = rng.binomial(n_t, 0.1)
    x_c = rng.binomial(n_c, 0.11)
    treatment, control = arm_moments(n_t, x_t), arm_moments(n_c, x_c)
    c = normal_critical_value(0.05)
    test = difference_test(treatment, control)
    low, high, bounded = fieller_relative_interval(treatment, control, c)
    significant = test.p_value < 0.05
    excludes_zero = (low > 0) | (high < 0)
    assert bounded.all()
    np.testing.assert_array_equal(significant, excludes_zero)
    assert significant.any() and not significant.all()


# --- Holm -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("without_gc_collect")
def test_holm_matches_statsmodels_within_each_family():
    rng = np.random.default_rng(3)
    p = rng.random(60) ** 4
    p[5] = 1e-40
    groups = rng.integers(0, 9, 60)
    adjusted = holm_adjust(p, groups)
    for group in np.unique(groups):
        mask = groups == group
        expected = multipletests(p[mask], method="holm")[1]
        np.testing.assert_allclose(adjusted[mask], expected, rtol=1e-12, atol=0)
    assert adjusted[5] > 0


def test_holm_single_test_is_unchanged():
    np.testing.assert_array_equal(holm_adjust([0.03], [4]), [0.03])


# --- Wilson (through the engine) --------------------------------------------------------------


def test_wilson_interval_on_each_variant():
    [result] = analyse_experiments([_experiment((100, 45), (100, 50))])
    control = result["variants"][0]
    assert control["confidence_interval_low"] == pytest.approx(0.356145, abs=5e-7)
    assert control["confidence_interval_high"] == pytest.approx(0.547554, abs=5e-7)
    low, high = sm_proportion.proportion_confint(50, 100, method="wilson")
    assert result["variants"][1]["confidence_interval_low"] == pytest.approx(low, abs=1e-12)
    assert result["variants"][1]["confidence_interval_high"] == pytest.approx(high, abs=1e-12)


# --- SRM --------------------------------------------------------------------------------------


def test_srm_reference_failure():
    result = sample_ratio_mismatch([9463, 7681], [0.5, 0.5], [0, 0], 1)
    expected_p = stats.chisquare([9463, 7681]).pvalue
    assert result.p_value[0] == pytest.approx(expected_p, rel=1e-9)
    assert 1e-43 < result.p_value[0] < 1e-41
    assert result.level == ["fail"]


def test_srm_unequal_weights_and_several_experiments():
    counts = [5000, 2600, 2400, 300, 310, 100, 120]
    weights = [0.5, 0.25, 0.25, 1, 1, 0.5, 0.5]
    experiment = [0, 0, 0, 1, 1, 2, 2]
    result = sample_ratio_mismatch(counts, weights, experiment, 3)
    first = stats.chisquare([5000, 2600, 2400], f_exp=[5000, 2500, 2500])
    second = stats.chisquare([300, 310])
    third = stats.chisquare([100, 120])
    expected = [first.pvalue, second.pvalue, third.pvalue]
    np.testing.assert_allclose(result.p_value, expected, rtol=1e-9)
    assert result.level == ["ok" if first.pvalue >= 0.01 else "warn", "ok", "ok"]
    np.testing.assert_allclose(result.expected[:3], [5000, 2500, 2500])


def test_srm_levels_at_thresholds():
    # chi-square with 1 df: choose counts giving p between 0.001 and 0.01.
    result = sample_ratio_mismatch([1000, 1130], [0.5, 0.5], [0, 0], 1)
    assert 0.001 <= stats.chisquare([1000, 1130]).pvalue < 0.01
    assert result.level == ["warn"]


def test_srm_counts_an_empty_arm_and_ignores_weight_zero_arms():
    result = sample_ratio_mismatch([1000, 0, 50], [0.5, 0.5, 0.0], [0, 0, 0], 1)
    assert result.p_value[0] == pytest.approx(stats.chisquare([1000, 0]).pvalue)
    assert np.isnan(result.expected[2])


@pytest.mark.parametrize(
    "counts, weights, reason",
    [
        ([6, 2], [0.5, 0.5], "srm_expected_below_5"),
        ([100], [1.0], "srm_too_few_arms"),
        ([100, 100], [0.5, np.nan], "srm_weights_unknown"),
        ([100, 100], [1.0, 0.0], "srm_too_few_arms"),
    ],
)
def test_srm_not_computable(counts, weights, reason):
    result = sample_ratio_mismatch(counts, weights, [0] * len(counts), 1)
    assert result.level == ["not_computable"] and result.reason == [reason]
    assert np.isnan(result.p_value[0])


# --- Bayesian ---------------------------------------------------------------------------------


def _chance_by_integration(a_t, b_t, a_c, b_c):
    """P(p_t > p_c) = integral of f_t(p) F_c(p) dp."""
    value, _ = integrate.quad(
        lambda p: stats.beta.pdf(p, a_t, b_t) * stats.beta.cdf(p, a_c, b_c),
        0,
        1,
        points=[a_t / (a_t + b_t), a_c / (a_c + b_c)],
        epsabs=1e-13,
        epsrel=1e-11,
        limit=500,
    )
    return value


def _loss_by_integration(a_t, b_t, a_c, b_c):
    """E[max(p_c - p_t, 0)] = integral of P(p_c > u) P(p_t < u) du."""
    value, _ = integrate.quad(
        lambda u: stats.beta.sf(u, a_c, b_c) * stats.beta.cdf(u, a_t, b_t),
        0,
        1,
        points=[a_t / (a_t + b_t), a_c / (a_c + b_c)],
        epsabs=1e-14,
        epsrel=1e-10,
        limit=500,
    )
    return value


def test_reference_chance_to_beat_control():
    result = compare_beta_posteriors(*_pair(120, 1000, 100, 1000))
    assert result.chance_to_beat_control[0] == pytest.approx(0.92318, abs=5e-6)


@pytest.mark.parametrize(
    "x_t, n_t, x_c, n_c",
    [
        (120, 1000, 100, 1000),  # shortest series: treatment successes
        (980, 1000, 960, 1000),  # shortest series: failures
        (3, 20, 15, 40),
        (0, 50, 0, 50),
        (50, 50, 49, 50),
        (0, 100, 30, 100),
        (400, 5000, 2, 30),  # shortest series: control successes
        (50_500, 500_000, 50_000, 500_000),  # long series, summed over a window around its mode
        (9_000, 10_000, 8_950, 10_000),
    ],
)
def test_bayesian_matches_numerical_integration(x_t, n_t, x_c, n_c):
    result = compare_beta_posteriors(*_pair(x_t, n_t, x_c, n_c))
    params = (x_t + 1, n_t - x_t + 1, x_c + 1, n_c - x_c + 1)
    chance, loss = _chance_by_integration(*params), _loss_by_integration(*params)
    assert result.chance_to_beat_control[0] == pytest.approx(chance, abs=1e-9)
    assert result.expected_loss[0] == pytest.approx(loss, abs=1e-10, rel=1e-6)
    assert not result.normal_approximation[0]


def test_probability_greater_is_symmetric_and_complementary():
    a, b, c, d = 7, 12, 9, 4
    forward = probability_greater(a, b, c, d)[0]
    assert forward + probability_greater(c, d, a, b)[0] == pytest.approx(1.0, abs=1e-13)
    assert forward == pytest.approx(probability_greater(d, c, b, a)[0], abs=1e-13)


def test_probability_greater_is_the_beta_negative_binomial_cdf():
    """Miller's series is the CDF of a beta-negative-binomial at a - 1 (scipy sums its pmf)."""
    for a, b, c, d in [(121, 881, 101, 901), (7, 12, 9, 4), (40, 3, 35, 9)]:
        expected = stats.betanbinom.cdf(a - 1, b, d, c)
        assert probability_greater(a, b, c, d)[0] == pytest.approx(expected, abs=1e-11)


def test_too_narrow_window_is_detected_and_summed_in_full(monkeypatch):
    monkeypatch.setattr(bayesian, "_WINDOW_WIDTHS", 0.5)
    params = (1501, 13501, 1401, 13601)
    expected = _chance_by_integration(*params)
    assert probability_greater(*params)[0] == pytest.approx(expected, abs=1e-9)


def test_bayesian_chunking_gives_the_same_answer(monkeypatch):
    n = np.array([1000, 4000, 800, 3000])
    x_t, x_c = np.array([120, 500, 60, 400]), np.array([100, 480, 70, 420])
    whole = compare_beta_posteriors(arm_moments(n, x_t), arm_moments(n, x_c))
    monkeypatch.setattr(bayesian, "_TERMS_PER_CHUNK", 150)
    chunked = compare_beta_posteriors(arm_moments(n, x_t), arm_moments(n, x_c))
    np.testing.assert_allclose(
        chunked.chance_to_beat_control, whole.chance_to_beat_control, rtol=1e-11
    )


def test_bayesian_normal_approximation_for_huge_counts():
    n = 1_000_000
    result = compare_beta_posteriors(*_pair(300_500, n, 300_000, n))
    assert result.normal_approximation[0]
    params = (300_501, n - 300_500 + 1, 300_001, n - 300_000 + 1)
    expected = _chance_by_integration(*params)
    assert result.chance_to_beat_control[0] == pytest.approx(expected, abs=2e-3)
    assert result.expected_loss[0] == pytest.approx(_loss_by_integration(*params), rel=2e-2)


def test_bayesian_is_null_for_empty_arms():
    result = compare_beta_posteriors(*_pair(0, 0, 10, 100))
    assert np.isnan(result.chance_to_beat_control[0]) and np.isnan(result.expected_loss[0])


# --- required sample size ---------------------------------------------------------------------


def _fleiss_textbook(p1, p2, alpha, power):
    """Fleiss, Levin & Paik eq. 4.14 (no continuity correction), equal group sizes."""
    z_a = stats.norm.ppf(1 - alpha / 2)
    z_b = stats.norm.ppf(power)
    p_bar = (p1 + p2) / 2
    null_part = z_a * math.sqrt(2 * p_bar * (1 - p_bar))
    alternative_part = z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((null_part + alternative_part) ** 2 / (p2 - p1) ** 2)


@pytest.mark.parametrize(
    "p, mde, alpha",
    [(0.1, 0.1, 0.05), (0.02, 0.2, 0.05), (0.5, 0.05, 0.01), (0.35, 0.1, 0.1), (0.001, 0.5, 0.05)],
)
def test_required_sample_size_is_fleiss(p, mde, alpha):
    ours = required_sample_size(p, mde, alpha)
    assert ours == _fleiss_textbook(p, p * (1 + mde), alpha, 0.8)
    # Cohen's h (statsmodels) is a different approximation of the same quantity: close, not equal.
    effect = sm_proportion.proportion_effectsize(p * (1 + mde), p)
    cohen = NormalIndPower().solve_power(effect, alpha=alpha, power=0.8)
    assert ours == pytest.approx(cohen, rel=0.03)


def test_required_sample_size_reference_and_edges():
    assert required_sample_size(0.10, 0.10, 0.05) == 14751
    assert required_sample_size(0.0, 0.10, 0.05) is None
    # Above 1/(1 + mde) the same relative change downwards is used.
    assert required_sample_size(0.95, 0.10, 0.05) == _fleiss_textbook(0.95, 0.855, 0.05, 0.8)


# --- sequential confidence sequences ----------------------------------------------------------


def _growthbook_half_width(variance, total_units, alpha, tuning_n):
    """The asymptotic CS half-width exactly as GrowthBook writes it (s2 = V * N)."""
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning_n)
    s2 = variance * total_units
    n_rho2 = total_units * rho**2
    width = math.sqrt(
        2 * (n_rho2 + 1) / (total_units**2 * rho**2) * math.log(math.sqrt(n_rho2 + 1) / alpha)
    )
    return math.sqrt(s2) * width


@pytest.mark.parametrize(
    "variance, units, alpha", [(1e-4, 4000, 0.05), (2.5e-5, 20_000, 0.01), (3e-3, 300, 0.1)]
)
def test_confidence_sequence_width_matches_reference_formula(variance, units, alpha):
    rho2 = mixing_rho_squared(alpha)
    ours = math.sqrt(variance) * critical_value(units, alpha, rho2)
    assert ours == pytest.approx(_growthbook_half_width(variance, units, alpha, 5000), rel=1e-12)
    # Always wider than the fixed-horizon interval.
    assert ours > math.sqrt(variance) * normal_critical_value(alpha)


def test_always_valid_p_value_is_dual_to_the_sequence():
    rng = np.random.default_rng(11)
    z = rng.normal(0, 4, 500)
    units = rng.integers(50, 100_000, 500)
    rho2 = mixing_rho_squared(0.05)
    p = always_valid_p_value(z, units, rho2)
    excludes_zero = np.abs(z) > critical_value(units, 0.05, rho2)
    np.testing.assert_array_equal(p < 0.05, excludes_zero)
    assert ((0 < p) & (p <= 1)).all()


def test_sequential_mode_controls_false_positives_under_repeated_looks():
    """Under H0, looking after every batch: the fixed z-test rejects far above alpha at some look,
    the confidence sequence stays at or below alpha."""
    rng = np.random.default_rng(2024)
    paths, looks, batch, rate, alpha = 2000, 40, 250, 0.1, 0.05
    x_t = np.cumsum(rng.binomial(batch, rate, (paths, looks)), axis=1)
    x_c = np.cumsum(rng.binomial(batch, rate, (paths, looks)), axis=1)
    n = batch * np.arange(1, looks + 1)
    sizes = np.broadcast_to(n, x_t.shape)
    treatment, control = arm_moments(sizes, x_t), arm_moments(sizes, x_c)
    z = difference_test(treatment, control).z
    fixed_ever = (2 * stats.norm.sf(np.abs(z)) < alpha).any(axis=1).mean()
    always_valid = always_valid_p_value(z, 2 * n, mixing_rho_squared(alpha))
    sequential_ever = (always_valid < alpha).any(axis=1).mean()
    assert fixed_ever > 0.15
    assert sequential_ever <= alpha + 0.01
