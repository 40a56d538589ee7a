"""Is a weekly series going up, down, or staying put? (docs/methods.md#trends)

A trend is called only when two independent conditions agree:

* **Significance** — the Mann-Kendall test, i.e. Kendall's tau of value against time
  (``scipy.stats.kendalltau``, as :mod:`exporter.analysis.kendall` computes it without importing
  scipy.stats), gives ``p < alpha``. scipy's ``method="auto"`` is used: the exact null
  distribution when the series has no ties (always the case at 8-12 points), otherwise the normal
  approximation with the tie-corrected variance of the S statistic.
* **Size** — the Theil-Sen relative change over the window is at least ``min_relative_change``
  in magnitude, so a tiny but perfectly steady drift is still ``stable``.

Relative change is defined as::

    relative_change = slope * (n - 1) / start

where ``slope`` is the Theil-Sen slope per bucket (per week) and ``start`` is the Theil-Sen line
evaluated at the first bucket (its intercept, scipy's ``method="separate"``). A robust fit can
start at or below zero on a series that rises from nothing; a relative change against a
non-positive base is meaningless, so ``start`` then falls back to the median of the series, which
is positive because series below ``min_median`` never reach this point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from exporter.analysis.kendall import mann_kendall_p_value, theil_sen
from exporter.analysis.numbers import finite_or_none
from exporter.results import CHANGE, COUNT, PROBABILITY, USERS_PER_WEEK, declare

TrendLabel = Literal["up", "down", "stable", "insufficient_data"]


@dataclass(frozen=True)
class TrendResult:
    """A trend label plus the evidence behind it; evidence is ``None`` when not computed."""

    label: TrendLabel
    p_value: float | None
    relative_change: float | None
    slope: float | None
    n_points: int

    def detail(self) -> TrendDetail:
        """The evidence as published (no NaN, no infinity)."""
        return TrendDetail(finite_or_none(self.p_value), finite_or_none(self.relative_change),
                           finite_or_none(self.slope), self.n_points)


@dataclass(frozen=True)
class TrendDetail:
    """The evidence behind a trend label (null where not computed: too few points or users)."""

    p_value: float | None = declare("Mann-Kendall p-value of the weekly series", PROBABILITY)
    relative_change: float | None = declare("Theil-Sen change over the window / its start", CHANGE)
    slope: float | None = declare("Theil-Sen slope, users per week", USERS_PER_WEEK)
    n_points: int = declare("weeks in the series", COUNT)


def classify_trend(
    values: Sequence[float],
    *,
    alpha: float = 0.05,
    min_relative_change: float = 0.10,
    min_points: int = 6,
    min_median: float = 5.0,
) -> TrendResult:
    """Classify a series of per-bucket values (oldest first) as up, down, stable or too thin.

    ``insufficient_data`` when there are fewer than ``min_points`` values or their median is
    below ``min_median`` (too few users for a trend to mean anything); its evidence fields are
    ``None``. A constant series is ``stable`` with ``p_value`` 1 (Kendall's tau is undefined
    there, and no monotonic trend is the right reading).
    """
    if min_points < 3:
        raise ValueError("min_points must be at least 3 for a trend test to be meaningful")
    if min_median <= 0:
        raise ValueError("min_median must be positive: relative change needs a positive level")
    series = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(series)):
        raise ValueError("trend values must be finite numbers")

    n_points = len(series)
    if n_points < min_points or float(np.median(series)) < min_median:
        return TrendResult("insufficient_data", None, None, None, n_points)

    if np.ptp(series) == 0:
        return TrendResult("stable", 1.0, 0.0, 0.0, n_points)

    p_value = mann_kendall_p_value(series)
    slope, intercept = theil_sen(series)
    start = intercept if intercept > 0 else float(np.median(series))
    relative_change = float(slope) * (n_points - 1) / start

    label: TrendLabel = "stable"
    if p_value < alpha and abs(relative_change) >= min_relative_change:
        label = "up" if relative_change > 0 else "down"
    return TrendResult(label, p_value, relative_change, float(slope), n_points)
