"""Sequential mode: asymptotic confidence sequences for the difference of two rates.

Used when an experiment has no planned sample size, so people look at the dashboard whenever they
like. A fixed-horizon z-test re-checked at every look rejects a true null far more often than
alpha; a confidence sequence is valid simultaneously at every sample size.

Method: the two-sided asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and
Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences" (arXiv 2103.06476,
Theorem 2.2 / eq. 9), in the parametrisation GrowthBook and Eppo use: with ``N`` units in the
comparison, ``V`` the variance of the estimated difference and the mixing parameter ``rho``
tuned so the sequence is tightest at ``N = tuning_n``,

    estimate -/+ sqrt(V) * c_N,
    c_N = sqrt( 2 (N rho^2 + 1) / (N rho^2) * ln( sqrt(N rho^2 + 1) / alpha ) ),
    rho^2 = ( -2 ln(alpha) + ln(-2 ln(alpha) + 1) ) / tuning_n          (paper, eq. 161).

``c_N`` plays the role of the normal critical value, so the same Wald and Fieller machinery gives
the sequential absolute- and relative-lift intervals.

**Mapping to p-values.** Holding ``rho`` fixed (tuned at the experiment's alpha) and asking for
the smallest level whose sequence excludes 0 gives the always-valid p-value

    p_N = min(1, sqrt(N rho^2 + 1) * exp( -z^2 N rho^2 / (2 (N rho^2 + 1)) )),
    z = estimate / sqrt(V),

which is the reciprocal of the normal-mixture likelihood ratio (mSPRT). By construction
``p_N < alpha`` exactly when the level-alpha sequence excludes 0, so significance, intervals and
p-values agree. ``P(p_N <= a) <= a`` holds at any stopping time, so Holm's adjustment applies to
these p-values as to fixed-horizon ones. The service is stateless, so this is the p-value at the
current look; a caller keeping history may take its running minimum.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TUNING_N = 5000
"""Total units (both arms) at which the sequence is tightest; GrowthBook's default."""


def mixing_rho_squared(alpha, tuning_n: float = DEFAULT_TUNING_N):
    """``rho^2`` that minimises the sequence's width at ``N = tuning_n`` for level ``alpha``."""
    log_alpha = np.log(np.asarray(alpha, dtype=float))
    return (-2.0 * log_alpha + np.log(-2.0 * log_alpha + 1.0)) / tuning_n


def critical_value(total_units, alpha, rho_squared):
    """Multiplier ``c_N`` of ``sqrt(V)`` giving the sequence's half-width at ``N`` units.

    ``alpha`` is the level of this interval (it may be a Bonferroni share of the experiment's
    alpha); ``rho_squared`` stays the one tuned at the experiment's alpha.
    """
    n_rho2 = np.maximum(np.asarray(total_units, dtype=float), 1.0) * rho_squared
    log_term = 0.5 * np.log1p(n_rho2) - np.log(np.asarray(alpha, dtype=float))
    return np.sqrt(2.0 * (n_rho2 + 1.0) / n_rho2 * log_term)


def always_valid_p_value(z, total_units, rho_squared):
    """Smallest level whose confidence sequence at ``N`` units excludes 0, given ``z``."""
    n_rho2 = np.maximum(np.asarray(total_units, dtype=float), 1.0) * rho_squared
    z2 = np.asarray(z, dtype=float) ** 2
    log_p = 0.5 * np.log1p(n_rho2) - z2 * n_rho2 / (2.0 * (n_rho2 + 1.0))
    return np.exp(np.minimum(log_p, 0.0))
