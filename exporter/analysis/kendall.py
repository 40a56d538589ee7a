"""The Mann-Kendall trend test and the Theil-Sen slope of a series against time, without scipy.stats.

These are ``scipy.stats.kendalltau(series, time).pvalue`` (``method="auto"``, two-sided) and
``scipy.stats.theilslopes(series, time)`` (``method="separate"``) for ``time = 0, 1, ..., n-1``,
written out with numpy and ``scipy.special``: importing ``scipy.stats`` costs about 47 MB of
resident memory and 0.7 s of start-up, a third of the whole service's, for these two functions
(issue 9 sets 120 MB and 2 s). The formulas and the choice between the exact null distribution and
the normal approximation are scipy's (1.17), so the results are the same to the last bit or two;
tests/test_kendall.py checks them against scipy on random series with and without ties.

Kendall's S is the number of concordant minus discordant pairs; time has no ties, so only the
series' ties enter. Without ties and with at most 33 points (or S at its extreme), the p-value is
exact (Kendall 1970: the number of permutations with ``c`` inversions, by cumulative sums);
otherwise ``S`` is taken as normal with the tie-corrected variance
``(n(n-1)(2n+5) - sum t(t-1)(2t+5)) / 18`` over the series' tie groups of size ``t``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

_EXACT_MAX_POINTS = 33  # scipy's limit for the exact distribution without ties


def mann_kendall_p_value(series: np.ndarray) -> float:
    """Two-sided p-value of Kendall's tau between ``series`` and its time order; NaN when the
    series is constant (tau is undefined)."""
    values = np.asarray(series, dtype=float)
    n = len(values)
    pairs = n * (n - 1) // 2
    later = np.triu(np.ones((n, n), dtype=bool), 1)  # (i, j) with i before j
    discordant = int(np.count_nonzero((values[:, None] > values[None, :]) & later))
    _, tie_sizes = np.unique(values, return_counts=True)
    tie_sizes = tie_sizes[tie_sizes > 1].astype(np.int64)
    tied_pairs = int((tie_sizes * (tie_sizes - 1) // 2).sum())
    if tied_pairs == pairs:
        return math.nan
    if not tied_pairs and (n <= _EXACT_MAX_POINTS or min(discordant, pairs - discordant) <= 1):
        return _exact_p_value(n, pairs - discordant)
    s = pairs - tied_pairs - 2 * discordant
    ties_term = int((tie_sizes * (tie_sizes - 1.0) * (2 * tie_sizes + 5)).sum())
    variance = (n * (n - 1.0) * (2 * n + 5) - ties_term) / 18
    return float(2 * special.ndtr(-abs(s / math.sqrt(variance))))


def theil_sen(series: np.ndarray) -> tuple[float, float]:
    """Theil-Sen slope per step and intercept (at the first point): the median of the pairwise
    slopes, and ``median(series) - slope * median(time)``."""
    values = np.asarray(series, dtype=float)
    time = np.arange(len(values), dtype=float)
    if len(values) < 2:
        raise ValueError("a Theil-Sen slope needs at least two points")
    step = time[:, None] - time
    rise = values[:, None] - values
    slope = float(np.median(rise[step > 0] / step[step > 0]))
    return slope, float(np.median(values) - slope * np.median(time))


def _exact_p_value(n: int, concordant: int) -> float:
    """Two-sided exact p-value for ``concordant`` concordant pairs of ``n`` untied points."""
    c = min(concordant, n * (n - 1) // 2 - concordant)  # the distribution is symmetric
    if n <= 2:
        return 1.0
    if c == 0:
        return 2.0 / math.factorial(n) if n < 171 else 0.0
    if c == 1:
        return 2.0 / math.factorial(n - 1) if n < 172 else 0.0
    if 4 * c == n * (n - 1):
        return 1.0
    # counts[k]: permutations of j items with k inversions, for k <= c (scaled by 1/j! past 170,
    # where j! overflows a float)
    counts = np.zeros(c + 1)
    counts[0:2] = 1.0
    for j in range(3, n + 1):
        counts = np.cumsum(counts) if n < 171 else np.cumsum(counts) / j
        if j <= c:
            counts[j:] -= counts[:c + 1 - j]
    probability = 2.0 * np.sum(counts) / math.factorial(n) if n < 171 else np.sum(counts)
    return float(np.clip(probability, 0, 1))
