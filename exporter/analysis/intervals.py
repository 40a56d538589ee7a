"""Confidence intervals for proportions, shared by every area."""

from __future__ import annotations

import numpy as np
from scipy import special


def z_critical(confidence: float = 0.95) -> float:
    """Two-sided standard-normal critical value, e.g. 1.959964 for 95%."""
    return float(special.ndtri(0.5 + confidence / 2.0))


def wilson_interval(successes, trials, confidence: float = 0.95):
    """Wilson score interval, vectorised over numpy arrays.

    Returns ``(low, high)`` arrays (or floats for scalar input). Where ``trials`` is 0 the rate
    is undefined and both bounds are NaN; callers turn NaN into ``null`` at the edge.
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = z_critical(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        # At x = 0 (x = n) the exact bound is 0 (1); rounding would leave ~1e-17 otherwise.
        low = np.where(n > 0, np.where(x <= 0, 0.0, np.clip(centre - half, 0.0, 1.0)), np.nan)
        high = np.where(n > 0, np.where(x >= n, 1.0, np.clip(centre + half, 0.0, 1.0)), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high
