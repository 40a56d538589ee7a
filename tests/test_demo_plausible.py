"""The simulated Plausible, over HTTP, against plain Python computations on the population.

The reference side rebuilds every number from the raw event columns with sets and loops: a
visitor is a (person, UTC day) pair, a session's facts come from its events up to the clock.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import aiohttp
import pytest

from exporter.analysis.experiments.event_metrics import EXPOSURE_EVENT
from exporter.demo import catalog
from exporter.demo.plausible import INVALID_KEY_OR_SITE, build_plausible_app
from exporter.demo.population import generate_population
from exporter.demo.runner import start_demo_upstreams
from tests.conftest import FakeClock

NOW = datetime(2026, 3, 10, 14, 37, 20, tzinfo=timezone.utc)  # a Tuesday afternoon
NOW_TS = int(NOW.timestamp())
TODAY = NOW.date()
API_KEY = "test-key"
SITE_ID = "backstage.fawkes.idp"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DAY = 86_400


@dataclass(frozen=True)
class Event:
    user: int
    ts: int
    name: str
    path: str
    session: int
    source: str

    @property
    def visitor(self) -> tuple[int, int]:
        return (self.user, self.ts // DAY)

    @property
    def is_pageview(self) -> bool:
        return self.name == catalog.PAGEVIEW


@pytest.fixture(scope="module")
def population():
    return generate_population(42, now=NOW)


@pytest.fixture(scope="module")
def events(population):
    """Every event visible at NOW, as plain objects."""
    p = population
    return [
        Event(int(u), int(t), catalog.EVENT_NAMES[n], catalog.PAGES[pa], int(s), catalog.SOURCES[so])
        for u, t, n, pa, s, so in zip(
            p.event_user, p.event_ts, p.event_name, p.event_path, p.event_session, p.event_source
        )
        if t <= NOW_TS
    ]


@pytest.fixture
def clock():
    return FakeClock(NOW_TS)


@pytest.fixture
async def client(aiohttp_client, population, clock):
    app = build_plausible_app(population, api_key=API_KEY, site_id=SITE_ID, clock=clock)
    return await aiohttp_client(app)


async def v2(client, body, status=200):
    response = await client.post("/api/v2/query", json={"site_id": SITE_ID, **body}, headers=AUTH)
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def realtime_visitors(client):
    response = await client.get("/api/v1/stats/realtime/visitors", params={"site_id": SITE_ID}, headers=AUTH)
    assert response.status == 200
    return await response.json()


async def v1(client, endpoint, status=200, **params):
    response = await client.get(f"/api/v1/stats/{endpoint}", params={"site_id": SITE_ID, **params}, headers=AUTH)
    payload = await response.json()
    assert response.status == status, payload
    return payload


# --- reference computations ------------------------------------------------------------------


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def in_days(events, first: date, last: date):
    start, end = midnight(first), midnight(last) + DAY
    return [e for e in events if start <= e.ts < end]


def visitors(events) -> int:
    return len({e.visitor for e in events})


def goal_of(event: Event) -> list[str]:
    goals = [goal for goal, name in catalog.FEATURE_GOALS.items() if event.name == name]
    if event.is_pageview and (event.path == "/docs" or event.path.startswith("/docs")):
        goals.append("Visit /docs**")
    if event.is_pageview and event.path == "/create/templates":
        goals.append("Visit /create/templates")
    return goals


def session_facts(all_events):
    """Per session, from every visible event: (start, end, number of events, page views)."""
    facts = {}
    for e in all_events:
        start, end, count, pages = facts.get(e.session, (e.ts, e.ts, 0, 0))
        facts[e.session] = (min(start, e.ts), max(end, e.ts), count + 1, pages + e.is_pageview)
    return facts


def session_metrics(all_events, matching):
    """visits, bounce rate, mean duration, views per visit over sessions with a matching event."""
    facts = session_facts(all_events)
    sessions = {e.session for e in matching}
    visits = len(sessions)
    bounces = sum(facts[s][2] == 1 for s in sessions)
    duration = sum(facts[s][1] - facts[s][0] for s in sessions)
    pages = sum(facts[s][3] for s in sessions)
    return visits, round(100 * bounces / visits), round(duration / visits), round(pages / visits, 2)


# --- v2 --------------------------------------------------------------------------------------


async def test_v2_7d_is_the_seven_full_days_ending_yesterday(client, events):
    body = await v2(
        client,
        {
            "metrics": ["visitors", "pageviews", "events"],
            "date_range": "7d",
            "dimensions": ["time:day"],
            "include": {"time_labels": True},
        },
    )
    days = [TODAY - timedelta(days=k) for k in range(7, 0, -1)]
    assert body["meta"]["time_labels"] == [d.isoformat() for d in days]
    assert body["query"]["date_range"] == [f"{days[0]}T00:00:00+00:00", f"{days[-1]}T23:59:59+00:00"]
    expected = []
    for day in days:
        todays = in_days(events, day, day)
        if todays:
            distinct_people = len({e.user for e in todays})
            expected.append(
                {
                    "dimensions": [day.isoformat()],
                    "metrics": [distinct_people, sum(e.is_pageview for e in todays), len(todays)],
                }
            )
    assert body["results"] == expected


async def test_multi_day_visitors_count_each_person_once_per_day(client, events):
    aggregate = await v2(client, {"metrics": ["visitors", "pageviews", "events"], "date_range": "30d"})
    series = await v2(
        client, {"metrics": ["visitors", "pageviews", "events"], "date_range": "30d", "dimensions": ["time:day"]}
    )
    window = in_days(events, TODAY - timedelta(days=30), TODAY - timedelta(days=1))
    total = aggregate["results"][0]["metrics"]
    assert total == [visitors(window), sum(e.is_pageview for e in window), len(window)]
    # With the daily salt, day buckets add up to the total; distinct people are far fewer.
    for index in range(3):
        assert sum(row["metrics"][index] for row in series["results"]) == total[index]
    assert len({e.user for e in window}) < total[0] / 3


async def test_v2_session_metrics_match_the_sessions(client, events):
    first, last = TODAY - timedelta(days=30), TODAY - timedelta(days=1)
    body = await v2(
        client,
        {
            "metrics": ["visits", "bounce_rate", "visit_duration", "views_per_visit"],
            "date_range": [first.isoformat(), last.isoformat()],
        },
    )
    expected = session_metrics(events, in_days(events, first, last))
    assert body["results"] == [{"metrics": list(expected), "dimensions": []}]


async def test_v2_hourly_buckets_are_omitted_when_empty_but_labelled(client, events):
    yesterday = TODAY - timedelta(days=1)
    body = await v2(
        client,
        {
            "metrics": ["visitors"],
            "date_range": [f"{yesterday}T00:00:00+00:00", f"{yesterday}T23:59:59+00:00"],
            "dimensions": ["time:hour"],
            "include": {"time_labels": True, "total_rows": True},
        },
    )
    labels = body["meta"]["time_labels"]
    assert labels[0] == f"{yesterday} 00:00:00" and labels[-1] == f"{yesterday} 23:00:00"
    assert len(labels) == 24
    by_hour = defaultdict(set)
    for e in in_days(events, yesterday, yesterday):
        by_hour[e.ts // 3600 % 24].add(e.user)
    assert [row["dimensions"][0] for row in body["results"]] == [
        f"{yesterday} {hour:02d}:00:00" for hour in sorted(by_hour)
    ]
    assert [row["metrics"][0] for row in body["results"]] == [len(by_hour[h]) for h in sorted(by_hour)]
    assert body["meta"]["total_rows"] == len(by_hour) < 24


async def test_v2_goal_breakdown_counts_conversions(client, events):
    body = await v2(
        client,
        {"metrics": ["visitors", "events", "conversion_rate"], "date_range": "30d", "dimensions": ["event:goal"]},
    )
    window = in_days(events, TODAY - timedelta(days=30), TODAY - timedelta(days=1))
    by_goal = defaultdict(list)
    for e in window:
        for goal in goal_of(e):
            by_goal[goal].append(e)
    total = visitors(window)
    expected = {
        goal: [visitors(hits), len(hits), round(100 * visitors(hits) / total, 2)] for goal, hits in by_goal.items()
    }
    assert {row["dimensions"][0]: row["metrics"] for row in body["results"]} == expected
    assert set(catalog.FEATURE_GOALS) <= set(expected)
    assert [row["metrics"][0] for row in body["results"]] == sorted(
        (row["metrics"][0] for row in body["results"]), reverse=True
    )


async def test_v2_goals_without_conversions_are_absent(client, events):
    sunday_night = [f"{TODAY - timedelta(days=2)}T22:00:00+00:00", f"{TODAY - timedelta(days=2)}T23:00:00+00:00"]
    body = await v2(client, {"metrics": ["visitors"], "date_range": sunday_night, "dimensions": ["event:goal"]})
    assert body["results"] == []
    aggregate = await v2(client, {"metrics": ["visitors", "visit_duration"], "date_range": sunday_night})
    assert aggregate["results"] == [{"metrics": [0, 0], "dimensions": []}]


async def test_v2_goal_by_week_labels_weeks_by_monday_or_range_start(client, events):
    first, last = date(2026, 2, 4), date(2026, 3, 8)  # a Wednesday to a Sunday
    body = await v2(
        client,
        {
            "metrics": ["visitors"],
            "date_range": [first.isoformat(), last.isoformat()],
            "dimensions": ["event:goal", "time:week"],
            "filters": [["is", "event:goal", ["Configure Monitoring", "Run Pipeline"]]],
            "include": {"time_labels": True},
        },
    )
    assert body["meta"]["time_labels"] == ["2026-02-04", "2026-02-09", "2026-02-16", "2026-02-23", "2026-03-02"]
    expected = defaultdict(set)
    for e in in_days(events, first, last):
        for goal in set(goal_of(e)) & {"Configure Monitoring", "Run Pipeline"}:
            day = datetime.fromtimestamp(e.ts, timezone.utc).date()
            label = max(day - timedelta(days=day.weekday()), first).isoformat()
            expected[(goal, label)].add(e.visitor)
    got = {tuple(row["dimensions"]): row["metrics"][0] for row in body["results"]}
    assert got == {key: len(value) for key, value in expected.items()}


async def test_v2_filters(client, events):
    window = in_days(events, TODAY - timedelta(days=30), TODAY - timedelta(days=1))
    cases = [
        (
            [["is", "visit:source", ["Slack", "GitHub"]], ["is", "event:goal", ["Deploy Application"]]],
            lambda e: e.source in ("Slack", "GitHub") and e.name == catalog.DEPLOY_APPLICATION,
        ),
        ([["is_not", "visit:source", ["Direct / None"]]], lambda e: e.source != "Direct / None"),
        ([["contains", "event:page", ["/docs"]]], lambda e: "/docs" in e.path),
        ([["contains_not", "event:page", ["/docs"]]], lambda e: "/docs" not in e.path),
        ([["contains", "event:goal", ["Pipe"]]], lambda e: e.name == catalog.RUN_PIPELINE),
        (
            [["or", [["is", "event:page", ["/monitoring"]], ["is", "visit:source", ["Jira"]]]]],
            lambda e: e.path == "/monitoring" or e.source == "Jira",
        ),
        ([["not", ["matches", "event:page", ["^/catalog"]]]], lambda e: not e.path.startswith("/catalog")),
        ([["contains", "event:page", ["DOCS"], {"case_sensitive": False}]], lambda e: "/docs" in e.path),
    ]
    for filters, predicate in cases:
        body = await v2(client, {"metrics": ["visitors", "events"], "date_range": "30d", "filters": filters})
        matching = [e for e in window if predicate(e)]
        assert body["results"][0]["metrics"] == [visitors(matching), len(matching)], filters


async def test_v2_has_done_keeps_whole_sessions(client, events):
    window = in_days(events, TODAY - timedelta(days=30), TODAY - timedelta(days=1))
    deployed = {e.session for e in window if e.name == catalog.DEPLOY_APPLICATION}
    for operator, keep in (("has_done", True), ("has_not_done", False)):
        body = await v2(
            client,
            {
                "metrics": ["visitors", "pageviews", "visits"],
                "date_range": "30d",
                "filters": [[operator, ["is", "event:goal", ["Deploy Application"]]]],
            },
        )
        matching = [e for e in window if (e.session in deployed) == keep]
        expected = [visitors(matching), sum(e.is_pageview for e in matching), len({e.session for e in matching})]
        assert body["results"][0]["metrics"] == expected


async def test_v2_source_breakdown_with_session_metrics_and_pagination(client, events):
    window = in_days(events, TODAY - timedelta(days=30), TODAY - timedelta(days=1))
    full = await v2(
        client,
        {
            "metrics": ["visitors", "visits", "bounce_rate"],
            "date_range": "30d",
            "dimensions": ["visit:source"],
            "order_by": [["visits", "asc"]],
            "include": {"total_rows": True},
        },
    )
    expected = {}
    for source in catalog.SOURCES:
        matching = [e for e in window if e.source == source]
        visits, bounce, _, _ = session_metrics(events, matching)
        expected[source] = [visitors(matching), visits, bounce]
    assert {row["dimensions"][0]: row["metrics"] for row in full["results"]} == expected
    assert [row["metrics"][1] for row in full["results"]] == sorted(v[1] for v in expected.values())
    assert full["meta"]["total_rows"] == len(catalog.SOURCES)
    page = await v2(
        client,
        {
            "metrics": ["visitors", "visits", "bounce_rate"],
            "date_range": "30d",
            "dimensions": ["visit:source"],
            "order_by": [["visits", "asc"]],
            "pagination": {"limit": 2, "offset": 2},
        },
    )
    assert page["results"] == full["results"][2:4]


async def test_v2_page_breakdown_equals_page_filter(client):
    breakdown = await v2(
        client, {"metrics": ["visitors", "pageviews", "visits"], "date_range": "7d", "dimensions": ["event:page"]}
    )
    for row in breakdown["results"][:3]:
        single = await v2(
            client,
            {
                "metrics": ["visitors", "pageviews", "visits"],
                "date_range": "7d",
                "filters": [["is", "event:page", row["dimensions"]]],
            },
        )
        assert single["results"][0]["metrics"] == row["metrics"]


async def test_v2_only_shows_events_up_to_its_clock(client, clock, events):
    body = await v2(client, {"metrics": ["events"], "date_range": "day"})
    today = in_days(events, TODAY, TODAY)
    assert body["results"][0]["metrics"] == [len(today)]
    assert body["query"]["date_range"][1] == NOW.isoformat()
    clock.now += 2 * 3600
    later = await v2(client, {"metrics": ["events"], "date_range": "day"})
    assert later["results"][0]["metrics"][0] > len(today)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"metrics": ["visitors"], "date_range": "7d", "bogus": 1}, "bogus"),
        ({"metrics": ["visitors"]}, "date_range"),
        ({"metrics": ["visits_per_day"], "date_range": "7d"}, "Unknown metric"),
        ({"metrics": ["visitors"], "date_range": "fortnight"}, "Invalid date_range"),
        ({"metrics": ["visitors"], "date_range": "7d", "filters": [["is", "event:goal", ["Nope"]]]}, "Nope"),
        ({"metrics": ["conversion_rate"], "date_range": "7d"}, "event:goal"),
        ({"metrics": ["bounce_rate"], "date_range": "7d", "dimensions": ["event:goal"]}, "Session metric"),
        ({"metrics": ["visitors"], "date_range": "7d", "dimensions": ["visit:country"]}, "not supported"),
        ({"metrics": ["visitors"], "date_range": "7d", "include": {"time_labels": True}}, "time dimension"),
        ({"metrics": ["visitors"], "date_range": "7d", "order_by": [["events", "desc"]]}, "order_by"),
        ({"metrics": ["visitors"], "date_range": "7d", "pagination": {"limit": 0}}, "limit"),
    ],
)
async def test_v2_rejects_bad_queries_with_400(client, body, message):
    payload = await v2(client, body, status=400)
    assert set(payload) == {"error"} and message in payload["error"]


async def test_v2_goal_contains_filter_on_an_unknown_goal_is_fine(client):
    body = await v2(
        client, {"metrics": ["visitors"], "date_range": "7d", "filters": [["contains", "event:goal", ["Nope"]]]}
    )
    assert body["results"] == [{"metrics": [0], "dimensions": []}]


async def test_v2_is_404_when_the_server_only_speaks_v1(aiohttp_client, population):
    app = build_plausible_app(
        population, api_key=API_KEY, site_id=SITE_ID, api_versions=("v1",), clock=lambda: NOW_TS
    )
    client = await aiohttp_client(app)
    response = await client.post("/api/v2/query", json={"site_id": SITE_ID}, headers=AUTH)
    assert response.status == 404
    assert isinstance(await realtime_visitors(client), int)


# --- auth ------------------------------------------------------------------------------------


async def test_auth_errors(client):
    async def status_and_body(headers, site_id):
        params = {} if site_id is None else {"site_id": site_id}
        response = await client.get("/api/v1/stats/aggregate", params=params, headers=headers)
        return response.status, await response.json()

    bad_key = await status_and_body({"Authorization": "Bearer nope"}, SITE_ID)
    unknown_site = await status_and_body(AUTH, "other.site")
    assert bad_key == unknown_site == (401, {"error": INVALID_KEY_OR_SITE})
    status, body = await status_and_body({}, SITE_ID)
    assert status == 401 and set(body) == {"error"}
    status, body = await status_and_body(AUTH, None)
    assert status == 400 and "site_id" in body["error"]

    query = {"metrics": ["visitors"], "date_range": "7d"}
    response = await client.post("/api/v2/query", json={"site_id": "other.site", **query}, headers=AUTH)
    assert (response.status, await response.json()) == (401, {"error": INVALID_KEY_OR_SITE})
    response = await client.post("/api/v2/query", json=query, headers=AUTH)
    assert response.status == 400 and "site_id" in (await response.json())["error"]


# --- v1 --------------------------------------------------------------------------------------


async def test_v1_timeseries_7d_includes_today_and_zero_fills(client, events):
    body = await v1(client, "timeseries", period="7d", metrics="visitors,pageviews,visit_duration")
    days = [TODAY - timedelta(days=k) for k in range(6, -1, -1)]
    assert [row["date"] for row in body["results"]] == [d.isoformat() for d in days]
    for row, day in zip(body["results"], days):
        todays = in_days(events, day, day)
        assert row["visitors"] == len({e.user for e in todays})
        assert row["pageviews"] == sum(e.is_pageview for e in todays)


async def test_v1_day_period_gives_24_hourly_rows_with_null_duration_when_empty(client, events):
    sunday = TODAY - timedelta(days=2)
    body = await v1(client, "timeseries", period="day", date=sunday.isoformat(), metrics="visitors,visit_duration")
    assert [row["date"] for row in body["results"]] == [f"{sunday} {h:02d}:00:00" for h in range(24)]
    by_hour = defaultdict(set)
    for e in in_days(events, sunday, sunday):
        by_hour[e.ts // 3600 % 24].add(e.user)
    for hour, row in enumerate(body["results"]):
        assert row["visitors"] == len(by_hour[hour])
        if not by_hour[hour]:
            assert row["visit_duration"] is None
    assert any(row["visit_duration"] is None for row in body["results"])


async def test_v1_aggregate_agrees_with_its_timeseries(client):
    params = {"period": "custom", "date": "2026-02-01,2026-02-28", "metrics": "visitors,pageviews,events,visits"}
    aggregate = (await v1(client, "aggregate", **params))["results"]
    series = (await v1(client, "timeseries", **params))["results"]
    assert len(series) == 28
    for metric in ("visitors", "pageviews", "events", "visits"):
        assert aggregate[metric]["value"] == sum(row[metric] for row in series)


async def test_v1_goal_breakdown_and_source_breakdown(client, events):
    window = in_days(events, TODAY - timedelta(days=30), TODAY)  # v1 30d: today and 30 days back
    goals = await v1(client, "breakdown", period="30d", property="event:goal", metrics="visitors,events")
    expected = defaultdict(list)
    for e in window:
        for goal in goal_of(e):
            expected[goal].append(e)
    assert {row["goal"]: (row["visitors"], row["events"]) for row in goals["results"]} == {
        goal: (visitors(hits), len(hits)) for goal, hits in expected.items()
    }

    sources = await v1(client, "breakdown", period="30d", property="visit:source", limit="2", page="2")
    ranked = sorted(
        ((visitors([e for e in window if e.source == s]), s) for s in catalog.SOURCES), key=lambda x: (-x[0], x[1])
    )
    assert sources["results"] == [{"source": s, "visitors": v} for v, s in ranked[2:4]]


async def test_v1_filters_with_alternatives(client, events):
    window = in_days(events, TODAY - timedelta(days=30), TODAY)
    body = await v1(
        client,
        "aggregate",
        period="30d",
        metrics="visitors,events,conversion_rate",
        filters="event:goal==Run Pipeline|Deploy Application;visit:source!=Slack",
    )
    wanted = {catalog.RUN_PIPELINE, catalog.DEPLOY_APPLICATION}
    matching = [e for e in window if e.name in wanted and e.source != "Slack"]
    denominator = visitors([e for e in window if e.source != "Slack"])
    assert body["results"] == {
        "visitors": {"value": visitors(matching)},
        "events": {"value": len(matching)},
        "conversion_rate": {"value": round(100 * visitors(matching) / denominator, 2)},
    }


async def test_v1_validation_errors(client):
    for params, message in [
        ({"period": "year"}, "period"),
        ({"metrics": "visitors,visitors"}, "multiple"),
        ({"metrics": "bounce_rate", "filters": "event:goal==Run Pipeline"}, "Session metric"),
        ({"filters": "event:goal==Nope"}, "Nope"),
        ({"period": "custom"}, "date"),
    ]:
        payload = await v1(client, "aggregate", status=400, **params)
        assert set(payload) == {"error"} and message in payload["error"]
    payload = await v1(client, "breakdown", status=400, property="visit:source", limit="5000")
    assert "limit" in payload["error"]


async def test_v1_realtime_visitors_is_a_bare_integer(client, events):
    expected = len({e.visitor for e in events if NOW_TS - 300 <= e.ts <= NOW_TS})
    assert await realtime_visitors(client) == expected


async def test_v1_realtime_visitors_over_a_working_day(aiohttp_client, population, clock):
    """At some moment of a weekday there are people on the site, counted as the reference does."""
    app = build_plausible_app(population, api_key=API_KEY, site_id=SITE_ID, clock=clock)
    client = await aiohttp_client(app)
    ts = population.event_ts
    seen = []
    for minute in range(9 * 60, 17 * 60, 37):
        clock.now = midnight(TODAY - timedelta(days=1)) + minute * 60
        expected = {int(u) for u, t in zip(population.event_user, ts) if clock.now - 300 <= t <= clock.now}
        seen.append(await realtime_visitors(client))
        assert seen[-1] == len(expected)
    assert max(seen) > 0


# --- the whole demo --------------------------------------------------------------------------


async def test_demo_upstreams_serve_one_population_with_per_run_secrets(tmp_path, events):
    upstreams = await start_demo_upstreams(workdir=tmp_path, now=NOW)
    try:
        assert upstreams.plausible_api_key not in repr(upstreams)
        async with aiohttp.ClientSession() as session:
            query = {"site_id": upstreams.plausible_site_id, "metrics": ["visitors"], "date_range": "7d"}
            key = {"Authorization": f"Bearer {upstreams.plausible_api_key}"}
            async with session.post(f"{upstreams.plausible_url}/api/v2/query", json=query, headers=key) as r:
                body = await r.json()
            week = in_days(events, TODAY - timedelta(days=7), TODAY - timedelta(days=1))
            assert body["results"][0]["metrics"] == [visitors(week)]
            async with session.post(f"{upstreams.plausible_url}/api/v2/query", json=query, headers=AUTH) as r:
                assert r.status == 401

            async with session.get(f"{upstreams.experimentation_url}/health") as r:
                assert r.status == 200
            token = {"Authorization": f"Bearer {upstreams.feedback_admin_token}"}
            async with session.get(f"{upstreams.feedback_url}/api/v1/feedback/stats", headers=token) as r:
                assert r.status == 200
        with gzip.open(upstreams.events_path, "rt", encoding="utf-8") as handle:
            custom = [line for line in handle if EXPOSURE_EVENT not in line]  # and the experiment exposures
            assert len(custom) == sum(not e.is_pageview for e in events)
    finally:
        await upstreams.close()
