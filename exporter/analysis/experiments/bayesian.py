"""Bayesian comparison of two conversion rates with Beta(1, 1) priors, in closed form.

With ``x`` conversions out of ``n`` the posterior of a rate is ``Beta(x + 1, n - x + 1)``.

Chance to beat control, ``h = P(p_t > p_c)``, uses the exact finite sum (Evan Miller, "Formulas
for Bayesian A/B testing"; integer first parameter ``a``)

    P(X > Y) = sum_{i=0}^{a-1} B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d)),
    X ~ Beta(a, b), Y ~ Beta(c, d).

Implementation notes:

* The sum has ``a`` terms, but ``P(X > Y)`` can equally be written with ``d``, ``c`` or ``b``
  terms (mirror ``p -> 1 - p`` and/or take the complement), so each comparison uses the shortest
  of the four: ``min(successes, failures) + 1`` of either arm.
* Terms are evaluated in log space: the first with ``scipy.special.betaln`` and the rest through
  the exact term ratio ``t_{i+1} / t_i = (c+i)(b+i) / ((c+b+d+i)(1+i))``, accumulated with a
  cumulative sum and added with a per-comparison log-sum-exp. That is the same closed form at
  the cost of one ``log`` per term instead of three ``betaln`` calls, and all comparisons share
  one flat, ragged array (no Python loop over comparisons).
* The terms are unimodal and only a window of ``O(sqrt(successes))`` of them around the mode is
  above double precision; only that window is added, and a window whose left-out terms could
  reach 1e-17 of the sum (bounded from the terms at its edges) is redone in full. The cost per
  comparison therefore grows with the square root of the counts, not with the counts.
* Above ``EXACT_TERMS_LIMIT`` (every arm has more than ~1e5 successes *and* failures) the
  posteriors are indistinguishable from normals and the normal approximation on the difference
  of the posterior rates is used instead; the result says which comparisons took that path.
* The series is the CDF of a beta-negative-binomial distribution at ``a - 1``, which the tests
  use as an independent check (``scipy.stats.betanbinom``).

Expected loss of shipping the treatment, ``E[max(p_c - p_t, 0)]`` in absolute rate units, follows
from the same ``h`` and John D. Cook's recurrences ``h(a+1,b,c,d) = h + g/a`` and
``h(a,b,c+1,d) = h - g/c`` with ``g = B(a+c, b+d) / (B(a,b) B(c,d))``:

    loss = (m_c - m_t) P(p_c > p_t) + g * (1/(a_c + b_c) + 1/(a_t + b_t)),

where ``m`` are the posterior means: no integration, no Monte Carlo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .moments import ArmMoments

EXACT_TERMS_LIMIT = 100_000
"""Above this shortest series (min over both arms of successes and failures, plus 1) the normal
approximation is used."""

_TERMS_PER_CHUNK = 2_000_000
"""Series terms held in memory at once (16 MB per float array); bounds memory for huge counts."""

_WINDOW_WIDTHS = 12.0
"""Half-width of the summed window, in units of the terms' spread around their mode."""

_NEGLIGIBLE_LOG = math.log(1e-17)
"""Left-out terms must stay below this share of the sum (below double precision)."""


@dataclass(frozen=True)
class BayesianComparison:
    """Per-comparison Bayesian results (parallel arrays, NaN where an arm is empty)."""

    chance_to_beat_control: np.ndarray
    expected_loss: np.ndarray
    normal_approximation: np.ndarray
    """True where the posteriors were too large for the exact series (see module docstring)."""


def _log_term(i, b, c, d):
    """log of the series term ``t_i = B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d))``."""
    return (
        special.betaln(c + i, b + d)
        - special.betaln(c, d)
        - special.betaln(1.0 + i, b)
        - np.log(b + i)
    )


def _window(a, b, c, d):
    """Per comparison, the index range ``[low, high]`` of the terms worth adding.

    The terms are unimodal: ``t_{i+1} / t_i - 1`` has the sign of ``(cb - c - b - d) - i (d + 1)``,
    so they rise up to ``mode = (cb - c - b - d) / (d + 1)`` and fall after it. Around the mode
    ``log t_i`` is close to a parabola whose curvature gives a natural width; the window spans
    ``_WINDOW_WIDTHS`` such widths on each side, clipped to ``[0, a - 1]``. Because ``low`` sits
    below the mode and ``high`` above it, the terms left out are bounded by
    ``low * t_low`` and ``(a - 1 - high) * t_high`` (checked after summing).
    """
    top = a - 1.0
    mode = (c * b - c - b - d) / (d + 1.0)
    centre = np.clip(mode, 0.0, top)
    # -d/di log(t_{i+1} / t_i): the curvature of log t_i, positive around a proper peak.
    curvature = (
        1.0 / (1.0 + centre) + 1.0 / (c + b + d + centre) - 1.0 / (c + centre) - 1.0 / (b + centre)
    )
    peaked = curvature > 0
    half_width = _WINDOW_WIDTHS / np.sqrt(np.where(peaked, curvature, 1.0))
    low = np.where(peaked, np.clip(np.floor(centre - half_width), 0.0, top), 0.0)
    high = np.where(peaked, np.clip(np.ceil(centre + half_width), 0.0, top), top)
    return low, high, np.rint(centre)


def _window_sum(b, c, d, low, high, peak):
    """``log sum_{i=low}^{high} t_i`` per comparison, plus ``log t_low`` and ``log t_high``.

    ``peak`` (an index inside the window near the largest term) fixes the log-sum-exp shift.
    All windows share one flat array: the first term of each comes from ``betaln``, the rest
    from the exact ratio ``t_i / t_{i-1} = (c+i-1)(b+i-1) / ((c+b+d+i-1) i)``, accumulated by
    one cumulative sum.
    """
    counts = (high - low + 1.0).astype(np.int64)
    starts = np.cumsum(counts) - counts
    position = np.arange(int(counts.sum()), dtype=float)

    def per_term(per_window):  # per_window[k] + (i - low_k) at every term i of window k
        return np.repeat(per_window - starts, counts) + position

    previous = low - 1.0  # i - 1 at each window's first term
    numerator = per_term(c + previous) * per_term(b + previous)
    denominator = per_term(c + b + d + previous) * per_term(low)
    # A window's first term needs no ratio (and i - 1 may be -1 there): its step is log 1 = 0.
    numerator[starts] = denominator[starts] = 1.0
    steps = np.log(numerator / denominator)
    # Each window starts at 0 and cancels the previous window's total, so the running sum (and
    # its rounding) stays on the scale of one window; the residual at each start is removed.
    window_totals = np.add.reduceat(steps, starts)
    steps[starts[1:]] = -window_totals[:-1]
    cumulative = np.cumsum(steps)
    log_low = _log_term(low, b, c, d)
    log_terms = cumulative - np.repeat(cumulative[starts] - log_low, counts)
    shift = log_terms[starts + (np.clip(peak, low, high) - low).astype(np.int64)]
    scaled = np.add.reduceat(np.exp(log_terms - np.repeat(shift, counts)), starts)
    return shift + np.log(scaled), log_low, log_terms[starts + counts - 1]


def _series(a, b, c, d) -> np.ndarray:
    """Evan Miller's series ``sum_{i<a} t_i`` (integer ``a >= 1``), summed over the window of
    terms that matter; a window whose left-out terms could reach 1e-17 of the sum is redone in
    full."""
    low, high, peak = _window(a, b, c, d)
    log_sum, log_low, log_high = _chunked(_window_sum, b, c, d, low, high, peak)
    top = a - 1.0
    with np.errstate(divide="ignore"):  # log(0) = -inf where nothing was left out
        left_out = np.logaddexp(np.log(low) + log_low, np.log(top - high) + log_high)
    redo = left_out - log_sum > _NEGLIGIBLE_LOG
    if redo.any():
        log_sum[redo] = _chunked(
            _window_sum, b[redo], c[redo], d[redo], np.zeros(redo.sum()), top[redo], peak[redo]
        )[0]
    return np.exp(log_sum)


def _chunked(function, b, c, d, low, high, peak):
    """``function`` over consecutive slices of windows holding about ``_TERMS_PER_CHUNK`` terms."""
    counts = high - low + 1.0
    chunk_of = (np.cumsum(counts) - counts) // _TERMS_PER_CHUNK
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    slices = [slice(start, stop) for start, stop in zip(np.r_[0, bounds], np.r_[bounds, b.size])]
    pieces = [function(b[s], c[s], d[s], low[s], high[s], peak[s]) for s in slices]
    return tuple(np.concatenate(parts) for parts in zip(*pieces))


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
    series = _series(*chosen) if a.size else np.empty(0)
    probability = np.where(choice >= 2, 1.0 - series, series)
    return np.clip(probability, 0.0, 1.0)


def _normal_comparison(mean_t, var_t, mean_c, var_c):
    """Chance to beat and expected loss when ``p_t - p_c`` is treated as normal."""
    mu = mean_t - mean_c
    sigma = np.sqrt(var_t + var_c)
    standardised = mu / sigma
    chance = special.ndtr(standardised)
    density = np.exp(-0.5 * standardised**2) / np.sqrt(2.0 * np.pi)
    loss = sigma * density - mu * special.ndtr(-standardised)
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
    log_g = (
        special.betaln(a_c + a_t, b_c + b_t) - special.betaln(a_c, b_c) - special.betaln(a_t, b_t)
    )
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
