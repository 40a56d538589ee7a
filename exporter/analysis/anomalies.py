"""Anomaly flags: complete days outside the band forecast for them from the days before
(docs/forecasting.md, "Anomalies").

Each complete day of the scan is compared with the one-day-ahead forecast that
:mod:`exporter.analysis.forecast` made for it from the days before it alone. Its ``score`` is the
day's error in standard deviations of the one-day-ahead error, on the square-root scale the
model works on; the day is flagged when ``|score| > ALERT_SCORE``. The published ``lower`` and
``upper`` are that alert band on the count scale, so a day is flagged exactly when its value is
outside them.

``ALERT_SCORE`` is 3.5, PostHog's threshold for anomaly alerts: a 95% band would flag one
ordinary day in twenty, several a month for every series. Weekday and weekend rhythms are part of
the forecast, so they are never flagged by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np

from ..results import COUNT, SCORE, declare
from .forecast import SeriesAnalysis, count_band, day_timestamp

ALERT_SCORE = 3.5


@dataclass(frozen=True)
class Anomaly:
    """A complete day whose value is outside the band forecast for it from the days before it."""

    series: str = declare("the series' name", key=True)
    timestamp: str = declare("start of the UTC day", key=True)
    value: float = declare("the series' value that day", COUNT)
    expected: float = declare("the forecast for the day from the days before it", COUNT)
    lower: float = declare("lower bound of the alert band (3.5 standard deviations), never below 0", COUNT)
    upper: float = declare("upper bound of the alert band (3.5 standard deviations)", COUNT)
    score: float = declare("the day's forecast error in standard deviations of the one-day-ahead error (on the "
                           "square-root scale); positive above the forecast, beyond +/-3.5 when flagged", SCORE)
    direction: Literal["up", "down"] = declare("above or below the band")


@dataclass(frozen=True)
class AnomalyReport:
    """Flagged days of every tracked series."""

    anomalies: tuple[Anomaly, ...] = declare("flagged complete days, newest first (then the largest |score|)")
    insufficient_history: tuple[str, ...] = declare("series with fewer than 21 complete days, never flagged")


@dataclass(frozen=True)
class DayCheck:
    """The last complete day of a series against its alert band (the anomaly metrics)."""

    series: str = declare("the series' name", key=True)
    timestamp: str = declare("start of the UTC day")
    score: float = declare("the day's forecast error in standard deviations of the one-day-ahead error", SCORE)
    anomaly: bool = declare("whether the day is outside the alert band")


def anomalies(analysis: SeriesAnalysis, since: date | None = None) -> tuple[Anomaly, ...]:
    """The flagged days of one series on or after ``since`` (every scanned day if None), newest first."""
    checked = analysis.one_day_ahead
    expected, lower, upper, score = _alert_bands(analysis)
    flagged = np.flatnonzero(np.abs(score) > ALERT_SCORE)
    return tuple(
        Anomaly(analysis.name, day_timestamp(checked.days[k]), float(checked.values[k]), float(expected[k]),
                float(lower[k]), float(upper[k]), float(score[k]), "up" if score[k] > 0 else "down")
        for k in flagged[::-1] if since is None or checked.days[k] >= since)


def last_day_check(analysis: SeriesAnalysis) -> DayCheck | None:
    """The last complete day's check; None when the series is too short to be checked."""
    checked = analysis.one_day_ahead
    if not checked.days:
        return None
    score = float(_alert_bands(analysis)[3][-1])
    return DayCheck(analysis.name, day_timestamp(checked.days[-1]), score, abs(score) > ALERT_SCORE)


def anomaly_report(analyses: Iterable[SeriesAnalysis], since: date) -> AnomalyReport:
    """Flagged days on or after ``since`` over every series, newest first, and the series too
    short to be checked."""
    analyses = list(analyses)
    flagged = [anomaly for analysis in analyses for anomaly in anomalies(analysis, since)]
    flagged.sort(key=lambda anomaly: (anomaly.timestamp, abs(anomaly.score)), reverse=True)
    return AnomalyReport(tuple(flagged),
                         tuple(analysis.name for analysis in analyses if analysis.insufficient_history))


def _alert_bands(analysis: SeriesAnalysis) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Expected value, alert band and score of every scanned day. The score is measured from the
    forecast taken as 0 when below it (as the band is), so ``|score| > ALERT_SCORE`` exactly when
    the value is outside the band."""
    checked = analysis.one_day_ahead
    expected, lower, upper = count_band(checked.mean, checked.sd, ALERT_SCORE)
    score = (np.sqrt(checked.values) - np.maximum(checked.mean, 0.0)) / checked.sd
    return expected, lower, upper, score
