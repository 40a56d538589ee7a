"""Numbers and names as a person reads them in a report: ``35.0%``, ``4 min 12 s``, ``Bounce rate``.

Units are the export's (docs/reports.md): ``ratio`` is a fraction or a relative change, shown as
a percentage; ``percent`` is already 0..100; durations are seconds.
"""

from __future__ import annotations

import math

# Words that read better spelled otherwise than by capitalizing a field name's parts.
WORDS = {"csat": "CSAT", "nps": "NPS", "srm": "SRM", "ci": "CI", "5star": "5-star", "avg": "average"}
PHRASES = {"p_value": "p-value"}


def label(name: str) -> str:
    """A field path as words: ``nps_5star.score`` -> ``NPS 5-star score``."""
    for phrase, replacement in PHRASES.items():
        name = name.replace(phrase, replacement)
    words = [WORDS.get(word, word) for word in name.replace(".", " ").replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def format_value(value: float, unit: str) -> str:
    """``value`` in ``unit`` as a report prints it."""
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "probability":
        return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"
    if unit == "seconds":
        return format_duration(value)
    if unit == "days":
        return f"{format_number(value)} d"
    if unit == "stars":
        return f"{value:.2f} / 5"
    return format_number(value)


def format_number(value: float) -> str:
    """Thousands separated; a fraction with three significant digits, a larger number with fewer."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min 12 s``, ``3 h 5 min``, ``2 d 4 h``: the two largest units."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    if whole >= 86_400:
        days, rest = divmod(whole, 86_400)
        return f"{days} d {rest // 3_600} h"
    if whole >= 3_600:
        hours, rest = divmod(whole, 3_600)
        return f"{hours} h {rest // 60} min"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s"


def format_change(current: float, previous: float, unit: str) -> str | None:
    """How ``current`` differs from ``previous``: percentage points between two fractions or
    percentages, a relative change otherwise; None when no change can be stated (from zero)."""
    if unit in ("ratio", "percent"):
        points = (current - previous) * (100 if unit == "ratio" else 1)
        return f"{points:+.1f} pp"
    if previous == 0:
        return None if current != 0 else "+0.0%"
    relative = (current - previous) / abs(previous)
    return f"{relative:+.1%}" if math.isfinite(relative) else None
