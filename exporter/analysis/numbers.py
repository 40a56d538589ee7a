"""Turning computed numbers into JSON-safe values: NaN and infinity never leave the service."""

from __future__ import annotations

import math


def finite_or_none(value) -> float | None:
    """``float(value)`` when it is a finite number, else ``None`` (JSON ``null``)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def safe_ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is zero."""
    if not denominator:
        return None
    return finite_or_none(numerator / denominator)
