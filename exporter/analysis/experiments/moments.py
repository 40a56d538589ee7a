"""Sufficient statistics of each arm: the one layer every inference function builds on.

A conversion arm is a Bernoulli sample, so ``(n, x)`` is all there is; from it follow the sample
mean (the conversion rate) and the variance of that mean. Everything is vectorised over a flat
array of arms (all arms of all experiments at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmMoments:
    """Per-arm moments as parallel float arrays.

    ``rate`` and ``variance_of_rate`` are NaN where ``assignments`` is 0 (the rate is undefined);
    inference code masks those arms out rather than dividing by zero.
    """

    assignments: np.ndarray
    conversions: np.ndarray
    rate: np.ndarray
    variance_of_rate: np.ndarray

    @property
    def has_data(self) -> np.ndarray:
        """True where the arm has at least one assignment."""
        return self.assignments > 0

    def take(self, index) -> "ArmMoments":
        """The moments of the arms at ``index`` (e.g. each arm's control, aligned to the arm)."""
        return ArmMoments(
            assignments=self.assignments[index],
            conversions=self.conversions[index],
            rate=self.rate[index],
            variance_of_rate=self.variance_of_rate[index],
        )


def arm_moments(assignments, conversions) -> ArmMoments:
    """Rate ``x/n`` and the variance of that estimate ``p(1-p)/n`` for every arm."""
    n = np.asarray(assignments, dtype=float)
    x = np.asarray(conversions, dtype=float)
    has_data = n > 0
    safe_n = np.where(has_data, n, 1.0)
    rate = np.where(has_data, x / safe_n, np.nan)
    variance = np.where(has_data, rate * (1.0 - rate) / safe_n, np.nan)
    return ArmMoments(assignments=n, conversions=x, rate=rate, variance_of_rate=variance)
