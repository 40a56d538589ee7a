"""Anomaly flags: planted spikes, drops and outages are flagged, weekly rhythms are not, and a day
is judged only by the days before it."""

from __future__ import annotations

import json
from datetime import date, timedelta

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.anomalies import ALERT_SCORE, AnomalyReport, anomalies, anomaly_report, last_day_check
from exporter.analysis.forecast import DailySeries, analyse, day_timestamp
from exporter.results import json_schema, to_json

MONDAY = date(2025, 1, 6)
WEEKLY_SHAPE = np.array([1.1, 1.15, 1.1, 1.05, 1.0, 0.25, 0.2])  # weekends at a fifth of weekdays


def weekly_counts(days: int, seed: int, level: float = 400.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(level * WEEKLY_SHAPE[np.arange(days) % 7]).astype(float)


def analysed(values, *, complete: bool = True, name: str = "s"):
    return analyse([DailySeries(name, MONDAY, list(values), last_day_complete=complete)])[name]


def day(offset: int) -> str:
    return day_timestamp(MONDAY + timedelta(days=offset))


@pytest.mark.parametrize("seed", range(3))
def test_planted_spikes_drops_and_outages_are_flagged_and_weekends_are_not(seed):
    counts = weekly_counts(182, seed)
    planted = {150: ("up", 3.0), 158: ("down", 0.4), 171: ("down", 0.0)}  # a Thursday, a Friday, a Wednesday
    for offset, (_, factor) in planted.items():
        counts[offset] *= factor
    found = {anomaly.timestamp: anomaly for anomaly in anomalies(analysed(counts))}
    assert set(found) == {day(offset) for offset in planted}  # nor the days after a spike
    for offset, (direction, _) in planted.items():
        anomaly = found[day(offset)]
        assert anomaly.direction == direction and abs(anomaly.score) > ALERT_SCORE
        assert not anomaly.lower <= anomaly.value <= anomaly.upper


def test_a_level_shift_is_flagged_until_the_forecast_has_caught_up():
    counts = weekly_counts(182, seed=4)
    counts[140:] = np.random.default_rng(5).poisson(200 * WEEKLY_SHAPE[np.arange(140, 182) % 7])  # halved
    flagged = anomalies(analysed(counts))
    assert flagged and all(anomaly.direction == "down" for anomaly in flagged)
    assert day(140) in {anomaly.timestamp for anomaly in flagged}
    assert min(anomaly.timestamp for anomaly in flagged) >= day(140)
    assert max(anomaly.timestamp for anomaly in flagged) < day(140 + 14)


def test_a_zero_series_flags_a_burst_with_a_finite_score():
    counts = np.zeros(60)
    counts[50] = 12
    found = anomalies(analysed(counts))
    assert [(anomaly.timestamp, anomaly.direction) for anomaly in found] == [(day(50), "up")]
    assert np.isfinite(found[0].score) and found[0].lower == 0
    assert anomalies(analysed(np.zeros(60))) == () and anomalies(analysed(np.full(60, 50.0))) == ()


def test_a_day_is_flagged_exactly_when_it_is_outside_its_band():
    counts = weekly_counts(200, seed=6, level=30)
    outliers = np.random.default_rng(7).choice(np.arange(110, 200), 12, replace=False)
    counts[outliers] *= np.random.default_rng(8).choice([0.0, 0.3, 2.5, 4.0], 12)
    result = analysed(counts)
    checked = result.one_day_ahead
    centre = np.maximum(checked.mean, 0)
    lower = np.maximum(centre - ALERT_SCORE * checked.sd, 0) ** 2
    upper = (centre + ALERT_SCORE * checked.sd) ** 2
    outside = {day_timestamp(when) for when, value, low, high in zip(checked.days, checked.values, lower, upper)
               if not low <= value <= high}
    found = anomalies(result)
    assert {anomaly.timestamp for anomaly in found} == outside and len(outside) >= 6
    for anomaly in found:
        assert anomaly.direction == ("up" if anomaly.value > anomaly.upper else "down")


@settings(max_examples=25, deadline=None)
@given(st.integers(30, 119), st.integers(0, 2**32 - 1))  # the full series is scanned from day 30
def test_a_day_is_judged_only_by_the_days_before_it(checked_day, seed):
    counts = weekly_counts(120, seed=9, level=50)
    changed = counts.copy()
    changed[checked_day + 1:] = np.random.default_rng(seed).integers(0, 1000, 120 - checked_day - 1)
    full, other, cut = analysed(counts), analysed(changed), analysed(counts[:checked_day + 1])
    when = MONDAY + timedelta(days=checked_day)
    reference = full.one_day_ahead
    at = reference.days.index(when)
    for result in (other, cut):
        checked = result.one_day_ahead
        position = checked.days.index(when)
        assert (checked.mean[position], checked.sd[position]) == (reference.mean[at], reference.sd[at])
    assert last_day_check(cut) == last_day_check(analysed(changed[:checked_day + 1]))
    assert [a for a in anomalies(full) if a.timestamp <= day(checked_day)] == \
        [a for a in anomalies(other) if a.timestamp <= day(checked_day)]


def test_the_last_complete_day_is_checked_and_today_is_not():
    counts = weekly_counts(100, seed=10)
    counts[-2] = 0  # yesterday's outage
    counts[-1] = 3  # today, a few minutes in
    check = last_day_check(analysed(counts, complete=False))
    assert check.timestamp == day(98) and check.anomaly and check.score < -ALERT_SCORE
    assert day(99) not in {anomaly.timestamp for anomaly in anomalies(analysed(counts, complete=False))}
    assert last_day_check(analysed(weekly_counts(100, seed=10))).anomaly is False
    assert last_day_check(analysed(weekly_counts(21, seed=10))) is None  # nothing before it to judge by


def test_the_report_lists_every_series_newest_first_and_the_short_ones_apart():
    spiky, droppy = weekly_counts(120, seed=11), weekly_counts(120, seed=12)
    spiky[[100, 110]] *= 4
    droppy[[105, 110]] = 0
    analyses = analyse([DailySeries("spiky", MONDAY, spiky, True), DailySeries("droppy", MONDAY, droppy, True),
                        DailySeries("new", MONDAY, [5.0] * 10, True)])
    report = anomaly_report(analyses.values(), since=MONDAY + timedelta(days=104))
    found = [(a.series, a.timestamp) for a in report.anomalies]
    assert sorted(found) == sorted([("droppy", day(110)), ("spiky", day(110)), ("droppy", day(105))])
    order = [(a.timestamp, abs(a.score)) for a in report.anomalies]
    assert order == sorted(order, reverse=True)  # newest first, then the largest |score|
    assert report.insufficient_history == ("new",)
    body = to_json(report)
    json.dumps(body, allow_nan=False)
    jsonschema.validate(body, json_schema(AnomalyReport))
