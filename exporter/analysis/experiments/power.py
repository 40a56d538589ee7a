"""Required sample size per arm for a two-proportion comparison (Fleiss, no continuity correction).

    n = (z_{1-alpha/2} sqrt(2 pbar (1-pbar)) + z_{power} sqrt(p1 (1-p1) + p2 (1-p2)))^2 / (p2-p1)^2

with ``pbar = (p1 + p2) / 2`` and equal arms (Fleiss, Levin & Paik, *Statistical Methods for
Rates and Proportions*, 3rd ed., eq. 4.14 without the continuity correction of 4.15). ``p1`` is
the control's current rate and ``p2 = p1 (1 + mde)``; when that would exceed 1 (a control rate
above ``1 / (1 + mde)``) the same relative change downwards, ``p1 (1 - mde)``, is used.
Note: statsmodels' ``NormalIndPower`` with ``proportion_effectsize`` uses Cohen's arcsine ``h``
instead, which gives slightly different numbers.
"""

from __future__ import annotations

import numpy as np
from scipy import special

FORMULA_NAME = "fleiss_no_cc"
DEFAULT_POWER = 0.8


def required_sample_size_array(
    p_control, mde_relative, alpha, power: float = DEFAULT_POWER
) -> np.ndarray:
    """Vectorised required units per arm (float, rounded up); NaN where undefined.

    Undefined when the control rate is unknown (NaN) or 0 (a relative change of 0 is no change),
    or when neither direction of the change stays within [0, 1].
    """
    p1 = np.asarray(p_control, dtype=float)
    mde = np.asarray(mde_relative, dtype=float)
    upward = p1 * (1.0 + mde)
    p2 = np.where(upward < 1.0, upward, p1 * (1.0 - mde))
    delta = p2 - p1
    # p2 < 0 only for a relative MDE of 100% or more from a rate above 1 / (1 + mde).
    defined = np.isfinite(delta) & (delta != 0) & (p2 >= 0)
    p2 = np.where(defined, p2, p1)  # keeps the arithmetic below real where n is undefined
    z_alpha = special.ndtri(1.0 - np.asarray(alpha, dtype=float) / 2.0)
    z_beta = special.ndtri(power)
    p_bar = (p1 + p2) / 2.0
    spread = z_alpha * np.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_beta * np.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    n = spread**2 / np.where(defined, delta, 1.0) ** 2
    return np.where(defined, np.ceil(n), np.nan)


def required_sample_size(
    p_control: float, mde_relative: float, alpha: float, power: float = DEFAULT_POWER
) -> int | None:
    """Units per arm to detect a relative change of ``mde_relative`` from ``p_control`` with a
    two-sided test at ``alpha`` and the given power; ``None`` when undefined (rate 0 or unknown)."""
    n = float(required_sample_size_array(p_control, mde_relative, alpha, power))
    return int(n) if np.isfinite(n) else None


def sample_progress(smallest_arm: float, required: float | None) -> float | None:
    """Share of the required size reached by the smallest arm, capped at 1 (None if unknown)."""
    if required is None or required <= 0:
        return None
    return min(1.0, smallest_arm / required)
