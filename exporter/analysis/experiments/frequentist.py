"""Frequentist comparison of a treatment arm with its control, vectorised over comparisons.

* Decision test: two-sided z-test with the **unpooled** standard error (the Wald test that the
  absolute-lift interval inverts, so "significant" and "interval excludes 0" agree).
* Also reported: the pooled z-test p-value, i.e. the 2x2 chi-square without continuity correction
  that textbooks and most online calculators show.
* Relative lift: the Fieller interval for ``p_t / p_c`` at the same critical value as the test.
  Its set ``{r : (p_t - r p_c)^2 <= c^2 (v_t + r^2 v_c)}`` contains ``r = 1`` exactly when
  ``|z_unpooled| <= c``, so it is dual to the decision test too.
* Multiple arms: Holm's step-down adjustment within each experiment.

Every function is pure, takes numpy arrays and never divides by zero; undefined results are NaN,
and the caller turns them into ``null`` plus a status code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .moments import ArmMoments


@dataclass(frozen=True)
class DifferenceTest:
    """Result of testing ``p_t - p_c = 0`` for each comparison (parallel arrays)."""

    difference: np.ndarray
    standard_error: np.ndarray
    """Unpooled standard error of the difference (0 when both rates are 0 or 1)."""
    z: np.ndarray
    """Decision statistic: difference over the unpooled SE (see ``zero_variance``)."""
    p_value: np.ndarray
    p_value_pooled: np.ndarray
    zero_variance: np.ndarray
    """True where the unpooled SE is 0, so the Wald test and intervals are undefined."""


def normal_critical_value(alpha):
    """Two-sided standard-normal critical value ``z_{1 - alpha/2}``, vectorised."""
    return special.ndtri(1.0 - np.asarray(alpha, dtype=float) / 2.0)


def two_sided_p_value(z):
    """``P(|Z| >= |z|)`` for a standard normal ``Z``; accurate far into the tail."""
    return 2.0 * special.ndtr(-np.abs(np.asarray(z, dtype=float)))


def pooled_standard_error(treatment: ArmMoments, control: ArmMoments) -> np.ndarray:
    """SE of the difference under H0 (one common rate estimated from both arms)."""
    n_t, n_c = treatment.assignments, control.assignments
    pooled_rate = (treatment.conversions + control.conversions) / np.maximum(n_t + n_c, 1.0)
    # Empty arms get a stand-in size of 1 so the arithmetic stays finite; callers mask them.
    inverse_sizes = 1.0 / np.maximum(n_t, 1.0) + 1.0 / np.maximum(n_c, 1.0)
    return np.sqrt(pooled_rate * (1.0 - pooled_rate) * inverse_sizes)


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` where the denominator is positive, else 0 (no evidence)."""
    positive = denominator > 0
    return np.where(positive, numerator / np.where(positive, denominator, 1.0), 0.0)


def difference_test(treatment: ArmMoments, control: ArmMoments) -> DifferenceTest:
    """Unpooled (decision) and pooled (reported) two-proportion z-tests, per comparison.

    When both rates sit on the boundary (each 0 or 1) the unpooled SE is 0 and the Wald test is
    undefined. Equal rates then give ``z = 0`` (p = 1); different rates (e.g. 0/100 vs 100/100)
    fall back to the pooled SE, which is positive there, so the decision stays finite and sane.
    Comparisons where either arm is empty come out NaN.
    """
    difference = treatment.rate - control.rate
    standard_error = np.sqrt(treatment.variance_of_rate + control.variance_of_rate)
    pooled_se = pooled_standard_error(treatment, control)
    zero_variance = standard_error == 0
    decision_se = np.where(zero_variance, pooled_se, standard_error)
    z = _ratio_or_zero(difference, decision_se)
    z_pooled = _ratio_or_zero(difference, pooled_se)
    comparable = treatment.has_data & control.has_data
    return DifferenceTest(
        difference=difference,
        standard_error=standard_error,
        z=np.where(comparable, z, np.nan),
        p_value=np.where(comparable, two_sided_p_value(z), np.nan),
        p_value_pooled=np.where(comparable, two_sided_p_value(z_pooled), np.nan),
        zero_variance=comparable & zero_variance,
    )


def wald_interval(estimate, standard_error, critical_value):
    """``estimate -/+ critical_value * standard_error`` as ``(low, high)`` arrays."""
    half_width = np.asarray(critical_value) * np.asarray(standard_error)
    return estimate - half_width, estimate + half_width


def fieller_relative_interval(treatment: ArmMoments, control: ArmMoments, critical_value):
    """Fieller interval for the relative lift ``p_t / p_c - 1`` (independent arms).

    Solves ``(A) r^2 - 2 (B) r + (C) <= 0`` with ``A = p_c^2 - c^2 v_c``, ``B = p_t p_c``,
    ``C = p_t^2 - c^2 v_t``. The set is a bounded interval only when ``A > 0``, i.e. when the
    control rate itself is distinguishable from 0 at critical value ``c``; otherwise it is the
    whole line or two rays and the function returns NaN bounds with ``bounded = False``.

    Returns ``(low, high, bounded)``; the lower bound is clipped at -1 (a rate cannot be negative).
    """
    a, va = treatment.rate, treatment.variance_of_rate
    b, vb = control.rate, control.variance_of_rate
    c2 = np.asarray(critical_value, dtype=float) ** 2
    leading = b * b - c2 * vb
    bounded = leading > 0
    # The discriminant c^2 (v_t b^2 + v_c a^2 - c^2 v_t v_c) rewritten as c^2 (v_t A + v_c a^2):
    # non-negative by construction whenever A > 0, so no rounding can make sqrt() fail.
    discriminant = c2 * (va * leading + vb * a * a)
    safe_leading = np.where(bounded, leading, 1.0)
    root = np.sqrt(np.where(bounded, discriminant, 0.0))
    low = (a * b - root) / safe_leading - 1.0
    high = (a * b + root) / safe_leading - 1.0
    low = np.where(bounded, np.maximum(low, -1.0), np.nan)
    high = np.where(bounded, high, np.nan)
    return low, high, bounded


def holm_adjust(p_values, groups) -> np.ndarray:
    """Holm step-down adjusted p-values, applied separately within each group.

    ``groups`` labels each p-value with its family (the experiment); families need not be
    contiguous. Adjusted ``p_(j) = max_{k<=j} min(1, (m - k + 1) p_(k))`` over the family's
    p-values in ascending order; with one test per family the p-value is unchanged.
    """
    p = np.asarray(p_values, dtype=float)
    family = np.asarray(groups)
    if p.size == 0:
        return p.copy()
    order = np.lexsort((p, family))
    sorted_family = family[order]
    _, family_start, family_index, family_size = np.unique(
        sorted_family, return_inverse=True, return_index=True, return_counts=True
    )
    rank = np.arange(p.size) - family_start[family_index]
    scaled = np.minimum(1.0, (family_size[family_index] - rank) * p[order])
    # Running maximum per family in one pass, done on integer ranks so it is exact even for
    # p-values like 1e-40: lifting family k's ranks by k * size keeps every family above all
    # earlier ones, so the global running maximum never leaks across families.
    rank_order = np.argsort(scaled, kind="stable")
    value_rank = np.empty(p.size, dtype=np.int64)
    value_rank[rank_order] = np.arange(p.size)
    lift = family_index.astype(np.int64) * p.size
    running_rank = np.maximum.accumulate(value_rank + lift) - lift
    adjusted = np.empty_like(p)
    adjusted[order] = scaled[rank_order][running_rank]
    return adjusted
