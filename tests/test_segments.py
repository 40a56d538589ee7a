"""User segments against a plain per-user reference written here from docs/methods.md#segments-and-engagement.

The reference loops over each user's events with Python sets and the statistics module; the rules
are written out literally (with the documented reading "dormant: R >= 28", see segments.py).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.segments import SEGMENT_NAMES, SegmentThresholds
from exporter.analysis.usage import UserCounts
from exporter.events.log import EventLog
from exporter.events.log_activity import (
    analyse_segments,
    feature_unique_users,
    user_activity,
    user_counts,
)
from tests.event_logs import make_log
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
analyse_segments = published(analyse_segments)

DAY = 86_400
NOW = 1_780_000_000 + 12_345  # not a midnight
TODAY = NOW // DAY

Event = tuple[str, str, int]


def at(days_ago: int, second_of_day: int = 43_200) -> int:
    """Epoch seconds ``days_ago`` UTC days before NOW's day, at ``second_of_day``."""
    return (TODAY - days_ago) * DAY + second_of_day


# --- reference ------------------------------------------------------------------------------

@dataclass
class Measures:
    l28: int
    l28_prev: int
    recency: int
    breadth: int
    age: int
    gap: float | None


def reference_measures(events, now=NOW, meaningful=None, features=None) -> dict[str, Measures]:
    today = now // DAY
    per_user: dict[str, list[tuple[str, int]]] = {}
    for user, name, ts in events:
        if ts <= now:
            per_user.setdefault(user, []).append((name, today - ts // DAY))
    if features is None:
        names = {name for _, name, _ in events}
        features = {name: name for name in names if meaningful is None or name in meaningful}
    result = {}
    for user, user_events in per_user.items():
        active = {d for name, d in user_events if meaningful is None or name in meaningful}
        if not active:
            continue
        recent = sorted(d for d in active if d < 90)
        gaps = [later - earlier for earlier, later in zip(recent, recent[1:])]
        result[user] = Measures(
            l28=len([d for d in active if d < 28]),
            l28_prev=len([d for d in active if 28 <= d < 56]),
            recency=min(active),
            breadth=len({features[name] for name, d in user_events if d < 28 and name in features}),
            age=max(d for _, d in user_events),
            gap=statistics.median(gaps) if gaps else None,
        )
    return result


def reference_segment(m: Measures, t: SegmentThresholds = SegmentThresholds()) -> str:
    if m.age <= t.new_max_age_days:
        return "new"
    if m.recency >= t.churned_min_recency_days:
        return "churned"
    if m.recency >= t.dormant_min_recency_days:
        return "dormant"
    if m.l28_prev >= t.at_risk_min_previous_active_days and (
        m.recency >= max(t.at_risk_min_recency_days, t.at_risk_gap_multiplier * m.gap)
        or m.l28 <= t.at_risk_max_activity_ratio * m.l28_prev
    ):
        return "at_risk"
    if m.l28 >= t.power_min_active_days and m.breadth >= t.power_min_features:
        return "power"
    if m.l28 >= t.core_min_active_days:
        return "core"
    assert m.l28 >= 1, "every user must fall in a segment"
    return "casual"


def reference_engagement(m: Measures) -> float:
    frequency = min(m.l28 / 16, 1)
    recency = math.exp(-m.recency / 7)
    breadth = min(m.breadth / 4, 1)
    trend = min(max(0.5 + 0.5 * (m.l28 - m.l28_prev) / max(m.l28_prev, 1), 0), 1)
    return 100 * (0.40 * frequency + 0.25 * recency + 0.20 * breadth + 0.15 * trend)


def check_report(report: dict, measures: dict[str, Measures], thresholds=SegmentThresholds()):
    json.dumps(report, allow_nan=False)
    total = len(measures)
    assert report["total_users"] == total
    assert [s["segment_name"] for s in report["segments"]] == list(SEGMENT_NAMES)
    for segment in report["segments"]:
        members = [m for m in measures.values()
                   if reference_segment(m, thresholds) == segment["segment_name"]]
        assert segment["user_count"] == len(members)
        if not total:
            assert segment["percentage"] is None
        else:
            assert segment["percentage"] == pytest.approx(100 * len(members) / total)
        if not members:
            assert segment["avg_engagement"] is None
            assert all(value is None for value in segment["characteristics"].values())
            continue
        assert segment["avg_engagement"] == pytest.approx(
            statistics.fmean(map(reference_engagement, members))
        )
        characteristics = segment["characteristics"]
        assert characteristics["median_active_days_28d"] == statistics.median(
            m.l28 for m in members
        )
        assert characteristics["median_active_days_previous_28d"] == statistics.median(
            m.l28_prev for m in members
        )
        assert characteristics["median_days_since_active"] == statistics.median(
            m.recency for m in members
        )
        assert characteristics["median_features_used_28d"] == statistics.median(
            m.breadth for m in members
        )
        assert characteristics["median_age_days"] == statistics.median(m.age for m in members)
    curve = report["power_user_curve"]
    assert [point["days_active"] for point in curve] == list(range(29))
    assert [point["users"] for point in curve] == [
        sum(1 for m in measures.values() if m.l28 == days) for days in range(29)
    ]


def measures_by_user(log: EventLog, **kwargs) -> dict[str, Measures]:
    activity = user_activity(log, now=NOW, **kwargs)
    return {
        log.user_names[user]: Measures(
            int(activity.l28[i]), int(activity.l28_prev[i]), int(activity.recency[i]),
            int(activity.breadth[i]), int(activity.age[i]),
            None if math.isnan(activity.gap[i]) else float(activity.gap[i]),
        )
        for i, user in enumerate(activity.users.tolist())
    }


# --- property tests -------------------------------------------------------------------------

event_lists = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        st.sampled_from("abcde"),
        # day -1 lies after NOW; second 0 and 86399 sit on the midnight boundaries
        st.builds(at, st.integers(-1, 120), st.sampled_from([0, 1, 12_345, 43_200, 86_399])),
    ),
    max_size=120,
)
meaningful_sets = st.none() | st.sets(st.sampled_from("abcde"), max_size=5)
feature_maps = st.none() | st.dictionaries(
    st.sampled_from("abcde"), st.sampled_from(["f1", "f2", "f3"])
)


@settings(max_examples=150, deadline=None)
@given(event_lists, meaningful_sets, feature_maps)
def test_user_measures_match_reference(events, meaningful, features):
    log = make_log(events)
    got = measures_by_user(log, meaningful_events=meaningful, feature_events=features)
    assert got == reference_measures(events, meaningful=meaningful, features=features)


@settings(max_examples=100, deadline=None)
@given(event_lists, meaningful_sets, feature_maps)
def test_report_matches_reference(events, meaningful, features):
    report = analyse_segments(
        make_log(events), now=NOW, meaningful_events=meaningful, feature_events=features
    )
    check_report(report, reference_measures(events, meaningful=meaningful, features=features))


def mixed_population(seed: int = 3, users: int = 400) -> list[Event]:
    """Users with different activity rates, start days and churn days: every segment occurs."""
    rng = np.random.default_rng(seed)
    events = []
    for user in range(users):
        first_day = int(rng.integers(0, 150))
        last_day = int(rng.integers(0, first_day + 1)) if rng.random() < 0.5 else 0
        rate = float(rng.choice([0.05, 0.2, 0.5, 0.9]))
        for day in range(last_day, first_day + 1):
            if day in (first_day, last_day) or rng.random() < rate:
                for _ in range(int(rng.integers(1, 3))):
                    events.append((f"u{user}", "abcdef"[int(rng.integers(0, 6))],
                                   at(day, int(rng.integers(0, DAY)))))
    return events


def test_mixed_population_matches_reference_and_fills_every_segment():
    events = mixed_population()
    features = {"a": "deploy", "b": "deploy", "c": "create", "d": "docs", "e": "pipeline"}
    report = analyse_segments(make_log(events), now=NOW, feature_events=features)
    measures = reference_measures(events, features=features)
    check_report(report, measures)
    assert all(segment["user_count"] > 0 for segment in report["segments"])
    assert sum(s["percentage"] for s in report["segments"]) == pytest.approx(100)


def test_custom_thresholds_are_applied():
    events = mixed_population(seed=5)
    thresholds = SegmentThresholds(
        new_max_age_days=7, dormant_min_recency_days=21, churned_min_recency_days=40,
        at_risk_min_previous_active_days=6, at_risk_min_recency_days=10,
        at_risk_gap_multiplier=2.0, at_risk_max_activity_ratio=0.3,
        power_min_active_days=15, power_min_features=2, core_min_active_days=4,
    )
    report = analyse_segments(make_log(events), now=NOW, thresholds=thresholds)
    check_report(report, reference_measures(events), thresholds)
    assert report["definitions"]["thresholds"]["power_min_active_days"] == 15


def test_many_sparse_users_match_reference():
    # 30,000 users with one or two events: the distinct-day count takes its sorting path.
    rng = np.random.default_rng(11)
    users, names, days = (rng.integers(0, high, 45_000) for high in (30_000, 2, 100))
    events = [
        (f"u{user}", "ab"[name], at(day, 100))
        for user, name, day in zip(users.tolist(), names.tolist(), days.tolist())
    ]
    log = make_log(events)
    assert measures_by_user(log) == reference_measures(events)


# --- seeded cases ---------------------------------------------------------------------------

def segment_of(events: list[Event], **kwargs) -> str:
    report = analyse_segments(make_log(events), now=NOW, **kwargs)
    (name,) = [s["segment_name"] for s in report["segments"] if s["user_count"]]
    return name


def test_recency_boundaries():
    first_seen = ("u", "a", at(100))
    assert segment_of([first_seen, ("u", "a", at(27))]) == "casual"
    assert segment_of([first_seen, ("u", "a", at(28))]) == "dormant"  # no active day in days 0-27
    assert segment_of([first_seen, ("u", "a", at(56))]) == "dormant"
    assert segment_of([first_seen, ("u", "a", at(57))]) == "churned"
    assert segment_of([first_seen]) == "churned"


def test_new_users_by_age():
    assert segment_of([("u", "a", at(14, 0))]) == "new"
    assert segment_of([("u", "a", at(15, 86_399))]) == "casual"


def test_power_needs_breadth_else_core():
    days = [("u", "abc"[d % 3], at(d)) for d in range(12)] + [("u", "a", at(80))]
    assert segment_of(days) == "power"
    assert segment_of([(u, "a", ts) for u, _, ts in days]) == "core"


def active_on(*days: int) -> list[Event]:
    return [("u", "a", at(day)) for day in days] + [("u", "a", at(100))]  # first seen long ago


def test_at_risk_by_decline():
    previous = range(30, 46, 2)  # L28_prev = 8
    assert segment_of(active_on(*previous, 1, 3, 5, 7)) == "at_risk"  # L28 = 4 <= 0.5 x 8
    assert segment_of(active_on(*previous, *range(1, 18, 2))) == "core"  # L28 = 9


def test_at_risk_by_silence_relative_to_the_usual_gap():
    # Usually active every 2 days, silent for 15: R >= max(14, 3 x 2).
    assert segment_of(active_on(*range(30, 46, 2), *range(15, 28, 2))) == "at_risk"
    # Usually active weekly (median gap 7): 15 days of silence is < 3 x 7.
    assert segment_of(active_on(28, 35, 42, 49, 15, 22, 27)) == "casual"


def test_events_after_now_and_passive_events_are_ignored():
    events = [("u", "view", at(50)), ("u", "deploy", at(3)), ("u", "deploy", NOW + 1),
              ("passive", "view", at(2))]
    report = analyse_segments(make_log(events), now=NOW, meaningful_events={"deploy"})
    assert report["total_users"] == 1
    measures = measures_by_user(make_log(events), meaningful_events={"deploy"})
    assert measures == {"u": Measures(l28=1, l28_prev=0, recency=3, breadth=1, age=50, gap=None)}


def test_midnight_separates_days():
    events = [("u", "a", at(1, 86_399)), ("u", "a", at(0, 0)), ("u", "a", at(40))]
    (measures,) = measures_by_user(make_log(events)).values()
    assert (measures.l28, measures.recency, measures.gap) == (2, 0, 20.0)


def test_empty_log():
    report = analyse_segments(EventLog.empty(), now=NOW)
    check_report(report, {})
    assert report["status_codes"] == ["no_users"]
    assert report["segmentation_method"] == "behavioral"
    assert report["last_updated"] == "2026-05-28T23:52:25Z"


def test_invalid_thresholds_are_rejected():
    for bad in ({"dormant_min_recency_days": 29}, {"churned_min_recency_days": 10},
                {"core_min_active_days": 13}, {"at_risk_gap_multiplier": -1.0}):
        with pytest.raises(ValueError):
            SegmentThresholds(**bad)


# --- counts for usage and features ----------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(event_lists, st.integers(-2, 121), st.integers(0, 60), meaningful_sets)
def test_user_counts_match_sets(events, start_days_ago, length_days, meaningful):
    log = make_log(events)
    start = at(start_days_ago, 0)
    end = start + length_days * DAY
    in_window = [(u, n) for u, n, ts in events if start <= ts < end]
    assert user_counts(log, start, end).active == len({u for u, _ in in_window})
    assert user_counts(log, start, end, meaningful_events=meaningful).active == len(
        {u for u, n in in_window if meaningful is None or n in meaningful}
    )
    assert user_counts(log, start, end).total == len({u for u, _, ts in events if ts < end})
    names = ["a", "c", "e", "missing"]
    assert feature_unique_users(log, names, start, end).users == {
        name: len({u for u, n in in_window if n == name}) for name in names
    }


def test_count_windows_are_half_open():
    events = [("start1", "a", 1_000), ("start2", "a", 1_000), ("inside", "c", 1_500),
              ("at_end", "a", 2_000)]
    log = make_log(events)
    assert user_counts(log, 1_000, 2_000) == UserCounts(total=3, active=3)
    assert feature_unique_users(log, ["a", "c"], 1_000, 2_000).users == {"a": 2, "c": 1}
