"""Sample ratio mismatch: are users split across arms the way the experiment was configured?

Pearson chi-square goodness of fit of the assignment counts against the configured weights,
over the arms with weight > 0 (an arm meant to get traffic that got no users counts, with 0
observed). Vectorised over all arms of all experiments; one result per experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

FAIL_BELOW = 0.001
WARN_BELOW = 0.01
MIN_EXPECTED_COUNT = 5.0
"""Below this expected count the chi-square approximation is not trusted."""


@dataclass(frozen=True)
class SrmResult:
    """Per experiment: ``p_value`` (NaN when not computable), ``level`` and ``reason``
    (a status code when not computable, else None); per arm: ``expected`` (NaN for arms outside
    the test)."""

    p_value: np.ndarray
    level: list[str]
    reason: list[str | None]
    expected: np.ndarray


def srm_level(p_value: float) -> str:
    """``fail`` below 0.001, ``warn`` below 0.01, else ``ok``."""
    if p_value < FAIL_BELOW:
        return "fail"
    if p_value < WARN_BELOW:
        return "warn"
    return "ok"


def sample_ratio_mismatch(assignments, weights, experiment_index, n_experiments: int) -> SrmResult:
    """Chi-square SRM check for every experiment at once.

    ``weights`` holds each arm's configured allocation (NaN when unknown); weights need not sum
    to 1, they are normalised over the tested arms. An experiment is ``not_computable`` when any
    weight is unknown or negative, when fewer than 2 arms have weight > 0, or when any tested arm's
    expected count is below 5.
    """
    n = np.asarray(assignments, dtype=float)
    w = np.asarray(weights, dtype=float)
    exp = np.asarray(experiment_index, dtype=np.int64)

    def per_experiment(values) -> np.ndarray:
        return np.bincount(exp, weights=values, minlength=n_experiments)

    weight_valid = np.isfinite(w) & (w >= 0)
    tested = weight_valid & (w > 0)
    invalid_weights = per_experiment(~weight_valid) > 0
    tested_arms = per_experiment(tested)
    weight_total = per_experiment(np.where(tested, w, 0.0))
    users_total = per_experiment(np.where(tested, n, 0.0))

    share = np.where(tested, w, 0.0) / np.maximum(weight_total[exp], np.finfo(float).tiny)
    expected = np.where(tested, users_total[exp] * share, np.nan)
    too_small = per_experiment(tested & ~(expected >= MIN_EXPECTED_COUNT)) > 0
    safe_expected = np.where(tested & (expected > 0), expected, 1.0)
    contributions = np.where(tested, (n - expected) ** 2 / safe_expected, 0.0)
    statistic = per_experiment(contributions)

    reason = np.full(n_experiments, None, dtype=object)
    reason[too_small] = "srm_expected_below_5"
    reason[tested_arms < 2] = "srm_too_few_arms"
    reason[invalid_weights] = "srm_weights_unknown"
    computable = ~(invalid_weights | (tested_arms < 2) | too_small)
    p_value = np.full(n_experiments, np.nan)
    # scipy.stats.chi2.sf(x, df) is special.chdtrc(df, x); scipy.stats itself costs ~47 MB to import.
    p_value[computable] = special.chdtrc(tested_arms[computable] - 1, statistic[computable])
    level = [srm_level(p) if ok else "not_computable" for p, ok in zip(p_value, computable)]
    return SrmResult(p_value=p_value, level=level, reason=list(reason), expected=expected)
