"""The synthetic demo population: determinism, shape, and the behaviours the demo must show.

Every expectation is checked with a plain computation over the generated columns (Python sets
and loops, scipy's Kendall tau), never with the generator's own helpers.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats

from exporter.analysis.anomalies import anomalies
from exporter.analysis.experiments.event_metrics import EXPOSURE_EVENT
from exporter.analysis.forecast import DailySeries, analyse
from exporter.demo import catalog
from exporter.demo.events_file import write_events_file
from exporter.demo.population import ARCHETYPES, generate_population

NOW = datetime(2026, 3, 10, 14, 37, tzinfo=timezone.utc)
NOW_TS = int(NOW.timestamp())
TODAY = NOW_TS // 86_400
WEEKS = 12


@pytest.fixture(scope="module")
def population():
    return generate_population(42, now=NOW)


@pytest.fixture(scope="module")
def visible(population):
    """The events up to NOW as plain tuples: (user, ts, name, path, session, source)."""
    p = population
    return [
        (int(u), int(t), catalog.EVENT_NAMES[n], catalog.PAGES[pa], int(s), catalog.SOURCES[so])
        for u, t, n, pa, s, so in zip(
            p.event_user, p.event_ts, p.event_name, p.event_path, p.event_session, p.event_source
        )
        if t <= NOW_TS
    ]


def weekly_unique_users(events, event_name):
    """Distinct users doing ``event_name`` in each of the last WEEKS full weeks (oldest first),
    weeks counted back from yesterday."""
    users = [set() for _ in range(WEEKS)]
    for user, ts, name, *_ in events:
        week = (TODAY - 1 - ts // 86_400) // 7
        if name == event_name and 0 <= week < WEEKS:
            users[week].add(user)
    return [len(u) for u in reversed(users)]


def active_days(events):
    days = defaultdict(set)
    for user, ts, name, *_ in events:
        if name != catalog.PAGEVIEW:
            days[user].add(ts // 86_400)
    return days


def test_same_seed_and_now_give_identical_populations(population):
    again = generate_population(42, now=NOW)
    other = generate_population(43, now=NOW)
    for column in ("event_user", "event_ts", "event_name", "event_path", "event_session", "event_source"):
        assert np.array_equal(getattr(population, column), getattr(again, column))
    assert not np.array_equal(population.event_ts[:1000], other.event_ts[:1000])


def test_columns_are_consistent(population):
    p = population
    assert p.n_users == 300 and len(p.user_ids) == 300
    assert p.user_ids[0] == "u-0001" and len(set(p.user_ids)) == 300
    assert np.all(np.diff(p.event_ts) >= 0)
    assert p.event_ts[0] >= p.start_ts and p.event_ts[-1] <= NOW_TS + 86_400
    assert p.event_ts[-1] > NOW_TS  # data keeps arriving after "now"
    # Sessions: one user, one source, start at their first event, contained in one UTC day.
    first = {}
    last = {}
    for user, ts, session, source in zip(p.event_user, p.event_ts, p.event_session, p.event_source):
        assert p.session_user[session] == user and p.session_source[session] == source
        first.setdefault(session, ts)
        last[session] = ts
    assert len(first) == p.n_sessions
    for session, start in first.items():
        assert p.session_start[session] == start
        assert start // 86_400 == last[session] // 86_400
    # Plausible's rule: a person's next session on the same day starts after 30 idle minutes.
    by_person = defaultdict(list)
    for session, start in first.items():
        by_person[p.session_user[session]].append((start, last[session]))
    for spans in by_person.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start - end > 1800 or start // 86_400 != end // 86_400


def test_every_event_name_page_and_source_is_used(population):
    assert set(np.unique(population.event_name)) == set(range(len(catalog.EVENT_NAMES)))
    assert set(np.unique(population.event_source)) == set(range(len(catalog.SOURCES)))
    assert len(np.unique(population.event_path)) >= len(catalog.PAGES) - 2


def test_weekdays_and_working_hours_dominate(visible):
    per_weekday = defaultdict(int)
    hours = defaultdict(int)
    for _, ts, *_ in visible:
        moment = datetime.fromtimestamp(ts, timezone.utc)
        per_weekday[moment.weekday() >= 5] += 1
        hours[moment.hour] += 1
    weekday_rate, weekend_rate = per_weekday[False] / 5, per_weekday[True] / 2
    assert weekday_rate > 4 * weekend_rate
    working = sum(n for hour, n in hours.items() if 6 <= hour < 20)
    assert working / len(visible) > 0.97


def test_configure_monitoring_rises_run_pipeline_falls_documentation_stays_flat(visible):
    weeks = np.arange(WEEKS)
    monitoring = weekly_unique_users(visible, catalog.CONFIGURE_MONITORING)
    pipeline = weekly_unique_users(visible, catalog.RUN_PIPELINE)
    docs = weekly_unique_users(visible, catalog.VIEW_DOCUMENTATION)

    def first_vs_last(series):
        return np.mean(series[-4:]) / np.mean(series[:4])

    tau, p_value = stats.kendalltau(weeks, monitoring)
    assert tau > 0 and p_value < 0.01 and first_vs_last(monitoring) > 1.8
    tau, p_value = stats.kendalltau(weeks, pipeline)
    assert tau < 0 and p_value < 0.01 and first_vs_last(pipeline) < 0.6
    tau, p_value = stats.kendalltau(weeks, docs)
    assert p_value > 0.05 and 0.85 < first_vs_last(docs) < 1.2


def test_every_feature_has_enough_weekly_users_for_a_trend(visible):
    for goal, event in catalog.FEATURE_GOALS.items():
        assert np.median(weekly_unique_users(visible, event)) >= 5, goal


def test_lifecycles_newcomers_slipping_dormant_and_churned_are_present(population, visible):
    days = active_days(visible)
    first_seen = {user: TODAY - min(d) for user, d in days.items()}
    last_seen = {user: TODAY - max(d) for user, d in days.items()}
    newcomers = {u for u, age in first_seen.items() if age <= 14}
    churned = {u for u, recency in last_seen.items() if recency > 56}
    dormant = {u for u, recency in last_seen.items() if 28 < recency <= 56}
    slipping = {
        u
        for u, d in days.items()
        if sum(28 <= TODAY - day < 56 for day in d) >= 4
        and sum(TODAY - day < 28 for day in d) <= 0.5 * sum(28 <= TODAY - day < 56 for day in d)
    }
    power = {u for u, d in days.items() if sum(TODAY - day < 28 for day in d) >= 12}
    for group in (newcomers, churned, dormant, slipping, power):
        assert len(group) >= 10
    archetype = population.user_archetype
    assert {ARCHETYPES[archetype[u]] for u in newcomers} == {"newcomer"}
    assert {ARCHETYPES[archetype[u]] for u in churned} <= {"churned", "casual"}
    # Everybody the population holds shows up at some point.
    assert len(days) == population.n_users


def users_of(population, archetype):
    return [u for u in range(population.n_users) if ARCHETYPES[population.user_archetype[u]] == archetype]


def test_casual_users_keep_a_weekly_habit(population, visible):
    """A casual user comes back on the same weekday: over eight weeks most of their active days
    share one weekday (independent daily coin flips would spread them over the week)."""
    days = active_days(visible)
    top_weekday_share = []
    for user in users_of(population, "casual"):
        recent = [day for day in days[user] if TODAY - day < 56]
        weekdays = [datetime.fromtimestamp(day * 86_400, timezone.utc).weekday() for day in recent]
        # No active day at all shows no habit: share 0.
        top_weekday_share.append(max(map(weekdays.count, weekdays), default=0) / max(len(weekdays), 1))
    assert np.median(top_weekday_share) >= 0.75


def test_core_users_stay_within_two_features_power_users_range_wider(population, visible):
    """Breadth (features used in 28 days) is what separates a steady core user from a power user."""
    feature_events = set(catalog.FEATURE_GOALS.values())
    features = defaultdict(set)
    for user, ts, name, *_ in visible:
        if name in feature_events and TODAY - ts // 86_400 < 28:
            features[user].add(name)
    assert max(len(features[user]) for user in users_of(population, "core")) <= 2
    assert np.median([len(features[user]) for user in users_of(population, "power")]) >= 4


def reference_funnel(events, steps, window, entered_from):
    """Users reaching each step: per user, the furthest step over every step-1 attempt made at
    or after ``entered_from``, each next step the earliest matching event strictly after the
    previous one, within the window of the attempt's start."""
    by_user = defaultdict(list)
    for user, ts, name, *_ in events:
        if name in steps:
            by_user[user].append((ts, name))
    reached = [0] * len(steps)
    for timeline in by_user.values():
        timeline.sort()
        best = 0
        for start, name in timeline:
            if name != steps[0] or start < entered_from:
                continue
            depth, at = 1, start
            for step in steps[1:]:
                nxt = next((t for t, n in timeline if n == step and at < t <= start + window), None)
                if nxt is None:
                    break
                depth, at = depth + 1, nxt
            best = max(best, depth)
        for k in range(best):
            reached[k] += 1
    return reached


@pytest.mark.parametrize("funnel", catalog.DEFAULT_FUNNELS, ids=lambda f: f.name)
def test_default_funnels_flow_with_drop_off_over_30_days(visible, funnel):
    reached = reference_funnel(visible, funnel.steps, funnel.window_seconds, NOW_TS - 30 * 86_400)
    assert reached[0] >= 30
    assert all(a > b for a, b in zip(reached, reached[1:])), reached
    assert 0.05 < reached[-1] / reached[0] < 0.95


def test_deployment_steps_take_minutes(visible):
    """Every build follows a deploy of the same person by 2-10 minutes, as the template promises.

    (Not paired by session: a follow-up deploy may land inside another session of the person, so
    one session can hold two deploys.)"""
    deploys: dict[int, list[int]] = {}
    builds = 0
    for user, ts, name, _, _, _ in visible:
        if name == catalog.DEPLOY_APPLICATION:
            deploys.setdefault(user, []).append(ts)
        elif name == catalog.BUILD_SUCCEEDED:
            builds += 1
            assert any(120 <= ts - deployed <= 600 for deployed in deploys.get(user, ())), (user, ts)
    assert builds > 100


def test_events_file_holds_the_custom_events_up_to_the_cut(population, visible, tmp_path):
    user_ids = population.user_ids
    expected = [
        (user_ids[user], name, ts)
        for user, ts, name, *_ in visible
        if name != catalog.PAGEVIEW
    ]
    for name in ("events.jsonl", "events.jsonl.gz"):
        path = tmp_path / name
        count = write_events_file(population, path, upto=NOW_TS)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        assert count == len(records)
        records = [record for record in records if record["event"] != EXPOSURE_EVENT]  # tests/test_demo_exposures.py
        assert len(records) == len(expected)
        teams = {user_ids[u]: catalog.TEAMS[t] for u, t in enumerate(population.user_team)}
        got = []
        for record in records:
            assert set(record) == {"user_id", "event", "timestamp", "props"}
            assert record["props"] == {"team": teams[record["user_id"]]}
            moment = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            assert record["timestamp"].endswith("Z")
            got.append((record["user_id"], record["event"], int(moment.timestamp())))
        assert sorted(got) == sorted(expected)


def daily_counts(population, upto: int) -> tuple[list[int], list[int]]:
    """Page views, and distinct users deploying, per UTC day of the window up to ``upto``."""
    days = upto // 86_400 - population.start_ts // 86_400 + 1
    pageviews, deployers = [0] * days, [set() for _ in range(days)]
    deploy = catalog.EVENT_NAMES.index(catalog.DEPLOY_APPLICATION)
    for user, ts, name in zip(population.event_user.tolist(), population.event_ts.tolist(),
                              population.event_name.tolist()):
        if ts <= upto:
            day = ts // 86_400 - population.start_ts // 86_400
            pageviews[day] += name == 0
            if name == deploy:
                deployers[day].add(user)
    return pageviews, [len(users) for users in deployers]


def test_the_planted_days_are_what_the_docstring_says(population):
    planted = {anomaly.kind: anomaly.day for anomaly in population.planted}
    assert planted["pageview_spike"] == TODAY - 1
    outage = planted["deployment_outage"]
    assert TODAY - 9 <= outage <= TODAY - 7 and (outage + 3) % 7 < 5  # a weekday, a week or so ago
    pageviews, deployers = daily_counts(population, NOW_TS)
    first = population.start_ts // 86_400
    weekdays = [day - first for day in range(TODAY - 35, TODAY - 1) if (day + 3) % 7 < 5 and day != outage]
    assert deployers[outage - first] == 0 and min(deployers[day] for day in weekdays) >= 10
    ordinary = sorted(pageviews[day] for day in weekdays)
    assert pageviews[TODAY - 1 - first] > 3 * ordinary[len(ordinary) // 2]


@pytest.mark.parametrize("weekday", range(7))
def test_the_planted_anomalies_are_flagged_whatever_the_weekday(weekday):
    """Whichever weekday the demo starts on, both planted days are flagged (the series counted
    plainly here, the flags by the analysis the service uses)."""
    now = NOW + timedelta(days=weekday)
    population = generate_population(42, now=now)
    pageviews, deployers = daily_counts(population, int(now.timestamp()))
    first = date.fromtimestamp(population.start_ts)
    analyses = analyse([DailySeries("pageviews", first, pageviews), DailySeries("deployers", first, deployers)])
    flagged = {(anomaly.series, anomaly.timestamp[:10], anomaly.direction)
               for analysis in analyses.values() for anomaly in anomalies(analysis)}
    planted = {anomaly.kind: (date(1970, 1, 1) + timedelta(days=anomaly.day)).isoformat()
               for anomaly in population.planted}
    assert ("pageviews", planted["pageview_spike"], "up") in flagged
    assert ("deployers", planted["deployment_outage"], "down") in flagged
