"""Bayesian comparison of two conversion rates with Beta(1, 1) priors, in closed form.

With ``x`` conversions out of ``n`` the posterior of a rate is ``Beta(x + 1, n - x + 1)``.

Chance to beat control, ``h = P(p_t > p_c)``, uses the exact finite sum (Evan Miller, "Formulas
for Bayesian A/B testing"; integer first parameter ``a``)

    P(X > Y) = sum_{i=0}^{a-1} B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d)),  X ~ Beta(a,b), Y ~ Beta(c,d).

Implementation notes:

* The sum has ``a`` terms, but ``P(X > Y)`` can equally be written with ``d``, ``c`` or ``b``
  terms (mirror ``p -> 1 - p`` and/or take the complement), so each comparison uses the shortest
  of the four: ``min(successes, failures) + 1`` of either arm.
* Terms are evaluated in log space: the first one with ``scipy.special.betaln``
  (``log B(c, b+d) - log B(c, d)``) and the rest through the exact term ratio
  ``t_{i+1} / t_i = (c+i)(b+i) / ((c+b+d+i)(1+i))``, accumulated with a cumulative sum and added
  with a per-comparison log-sum-exp. That is the same closed form at the cost of one ``log`` per
  term instead of three ``betaln`` calls, and all comparisons share one flat, ragged array.
* Above ``EXACT_TERMS_LIMIT`` terms (every arm has more than ~1e5 successes *and* failures) the
  posteriors are indistinguishable from normals and the normal approximation on the difference
  of the posterior rates is used instead; the result says which comparisons took that path.

Expected loss of shipping the treatment, ``E[max(p_c - p_t, 0)]`` in absolute rate units, follows
from the same ``h`` and John D. Cook's recurrences ``h(a+1,b,c,d) = h + g/a`` and
``h(a,b,c+1,d) = h - g/c`` with ``g = B(a+c, b+d) / (B(a,b) B(c,d))``:

    loss = (m_c - m_t) P(p_c > p_t) + g * (1/(a_c + b_c) + 1/(a_t + b_t)),

where ``m`` are the posterior means: no integration, no Monte Carlo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .moments import ArmMoments

EXACT_TERMS_LIMIT = 100_000
"""Largest number of series terms per comparison before the normal approximation is used."""

_TERMS_PER_CHUNK = 2_000_000
"""Series terms held in memory at once (16 MB per float array); bounds memory for huge counts."""


@dataclass(frozen=True)
class BayesianComparison:
    """Per-comparison Bayesian results (parallel arrays, NaN where an arm is empty)."""

    chance_to_beat_control: np.ndarray
    expected_loss: np.ndarray
    normal_approximation: np.ndarray
    """True where the posteriors were too large for the exact series (see module docstring)."""


def _series_sum(a, b, c, d) -> np.ndarray:
    """Evan Miller's series ``sum_{i<a} B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d))``, ragged.

    ``a`` holds positive integers (the number of terms per comparison); b, c, d are positive.
    """
    terms = a.astype(np.int64)
    starts = np.cumsum(terms) - terms
    segment = np.repeat(np.arange(terms.size), terms)
    i = np.arange(int(terms.sum()), dtype=float) - starts[segment]
    b_i, c_i, d_i = (values[segment] for values in (b, c, d))
    log_first = special.betaln(c, b + d) - special.betaln(c, d)
    # log(t_{i+1} / t_i) for every i; shifted by one so position i holds log(t_i / t_{i-1}),
    # then summed into log(t_i / t_0) by one cumulative sum over all segments. Each segment's
    # start cancels the previous segment's total, keeping the running sum (and so its rounding)
    # on the scale of the segment itself; the small residual left at the start is subtracted.
    log_ratio = np.log((c_i + i) / (c_i + b_i + d_i + i) * ((b_i + i) / (1.0 + i)))
    steps = np.empty_like(log_ratio)
    steps[0] = 0.0
    steps[1:] = log_ratio[:-1]
    steps[starts] = 0.0
    segment_totals = np.add.reduceat(steps, starts)
    steps[starts[1:]] = -segment_totals[:-1]
    cumulative = np.cumsum(steps)
    log_terms = cumulative - cumulative[starts][segment] + log_first[segment]
    peak = np.maximum.reduceat(log_terms, starts)
    scaled_sum = np.add.reduceat(np.exp(log_terms - peak[segment]), starts)
    return np.exp(peak + np.log(scaled_sum))


def _chunked_series_sum(a, b, c, d) -> np.ndarray:
    """``_series_sum`` over consecutive slices holding about ``_TERMS_PER_CHUNK`` terms each."""
    chunk_of = (np.cumsum(a) - a) // _TERMS_PER_CHUNK
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    pieces = [
        _series_sum(a[s], b[s], c[s], d[s])
        for s in (slice(lo, hi) for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, a.size]))
    ]
    return np.concatenate(pieces) if pieces else np.empty(0)


def probability_greater(a, b, c, d) -> np.ndarray:
    """Exact ``P(X > Y)`` for ``X ~ Beta(a, b)``, ``Y ~ Beta(c, d)``, positive integer parameters.

    Uses whichever of the four equivalent series is shortest (see module docstring).
    """
    a, b, c, d = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (a, b, c, d))
    # Four ways to the same probability: (first parameter, the other three, complement?).
    forms = np.stack(
        [
            np.stack([a, b, c, d]),  # P(X > Y)
            np.stack([d, c, b, a]),  # P(1-Y > 1-X)
            np.stack([c, d, a, b]),  # 1 - P(Y > X)
            np.stack([b, a, d, c]),  # 1 - P(1-X > 1-Y)
        ]
    )
    choice = np.argmin(forms[:, 0, :], axis=0)
    columns = np.arange(a.size)
    chosen = forms[choice, :, columns].T
    series = _chunked_series_sum(*chosen) if a.size else np.empty(0)
    probability = np.where(choice >= 2, 1.0 - series, series)
    return np.clip(probability, 0.0, 1.0)


def _normal_comparison(mean_t, var_t, mean_c, var_c):
    """Chance to beat and expected loss when ``p_t - p_c`` is treated as normal."""
    mu = mean_t - mean_c
    sigma = np.sqrt(var_t + var_c)
    standardised = mu / sigma
    chance = special.ndtr(standardised)
    loss = sigma * np.exp(-0.5 * standardised**2) / np.sqrt(2.0 * np.pi) - mu * special.ndtr(-standardised)
    return chance, loss


def compare_beta_posteriors(treatment: ArmMoments, control: ArmMoments) -> BayesianComparison:
    """Chance to beat control and expected loss of shipping, for each treatment/control pair."""
    comparable = treatment.has_data & control.has_data
    # Empty arms get a stand-in posterior so the arithmetic runs; their results are masked.
    n_t = np.where(comparable, treatment.assignments, 1.0)
    n_c = np.where(comparable, control.assignments, 1.0)
    x_t = np.where(comparable, treatment.conversions, 0.0)
    x_c = np.where(comparable, control.conversions, 0.0)
    a_t, b_t = x_t + 1.0, n_t - x_t + 1.0
    a_c, b_c = x_c + 1.0, n_c - x_c + 1.0
    mean_t, mean_c = a_t / (a_t + b_t), a_c / (a_c + b_c)

    shortest_series = np.minimum(np.minimum(a_t, b_t), np.minimum(a_c, b_c))
    approximate = shortest_series > EXACT_TERMS_LIMIT
    exact = ~approximate

    chance = np.empty_like(mean_t)
    loss = np.empty_like(mean_t)
    chance[exact] = probability_greater(a_t[exact], b_t[exact], a_c[exact], b_c[exact])
    log_g = special.betaln(a_c + a_t, b_c + b_t) - special.betaln(a_c, b_c) - special.betaln(a_t, b_t)
    correction = np.exp(log_g) * (1.0 / (a_c + b_c) + 1.0 / (a_t + b_t))
    loss[exact] = ((mean_c - mean_t) * (1.0 - chance) + correction)[exact]

    if approximate.any():
        var_t = mean_t * (1.0 - mean_t) / (a_t + b_t + 1.0)
        var_c = mean_c * (1.0 - mean_c) / (a_c + b_c + 1.0)
        chance[approximate], loss[approximate] = _normal_comparison(
            mean_t[approximate], var_t[approximate], mean_c[approximate], var_c[approximate]
        )

    return BayesianComparison(
        chance_to_beat_control=np.where(comparable, chance, np.nan),
        expected_loss=np.where(comparable, np.maximum(loss, 0.0), np.nan),
        normal_approximation=comparable & approximate,
    )
