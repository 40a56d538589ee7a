"""The Plausible client against fake servers speaking v1 and v2 (docs/upstreams.md#plausible-analytics)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from exporter.errors import SourceError
from exporter.health import HealthRegistry
from exporter.sources import plausible as plausible_source
from exporter.sources.plausible import PlausibleClient
from exporter.timeranges import TimeRange, resolve
from tests.conftest import service_config
from tests.fakes.plausible import API_KEY, FakePlausible


def client_for(server, **overrides) -> PlausibleClient:
    config = service_config(str(server.make_url("/")), **overrides).sources.plausible
    health = HealthRegistry()
    health.register("plausible")
    return PlausibleClient(config, health)


@pytest.fixture
def now() -> datetime:
    return datetime.now(timezone.utc)


async def _series_and_totals(server, version, window):
    client = client_for(server, **{"sources.plausible.api_version": version})
    try:
        return await client.timeseries(window), await client.aggregate(window)
    finally:
        await client.close()


@pytest.mark.parametrize("time_range", [TimeRange.D7, TimeRange.D30, TimeRange.H24, TimeRange.H6])
async def test_v1_and_v2_give_the_same_zero_filled_series(aiohttp_server, fake_plausible, now, time_range):
    server = await aiohttp_server(fake_plausible.app())
    window = resolve(time_range, now)
    v2_points, v2_total = await _series_and_totals(server, "v2", window)
    v1_points, v1_total = await _series_and_totals(server, "v1", window)
    assert [p.bucket for p in v2_points] == window.buckets() == [p.bucket for p in v1_points]
    assert [p.values for p in v2_points] == [p.values for p in v1_points]
    # The fake leaves buckets empty on purpose: v2 omits them, we must fill them with zeros.
    assert any(p.values["visitors"] == 0 for p in v2_points)
    if time_range.is_sub_day:
        assert v2_total.approximation is None and "v1 cannot query part of a day" in v1_total.approximation
    else:
        assert v2_total.metrics["pageviews"] == v1_total.metrics["pageviews"] == sum(
            p.values["pageviews"] for p in v2_points)


async def test_day_windows_are_explicit_calendar_dates_on_both_apis(aiohttp_server, fake_plausible, now):
    server = await aiohttp_server(fake_plausible.app())
    window = resolve(TimeRange.D7, now)
    for version in ("v2", "v1"):
        await _series_and_totals(server, version, window)
    first, last = (now.date() - timedelta(days=6)).isoformat(), now.date().isoformat()
    v2_bodies = [body for method, _, body in fake_plausible.requests if method == "POST"]
    v1_queries = [query for method, _, query in fake_plausible.requests if method == "GET"]
    assert all(body["date_range"] == [first, last] for body in v2_bodies)
    assert all(query["period"] == "custom" and query["date"] == f"{first},{last}" for query in v1_queries)


async def test_sub_day_window_on_v2_is_a_datetime_range_with_offset(aiohttp_server, fake_plausible, now):
    server = await aiohttp_server(fake_plausible.app())
    await _series_and_totals(server, "v2", resolve(TimeRange.H1, now))
    start, end = fake_plausible.requests[0][2]["date_range"]
    assert start.endswith("+00:00") and end.endswith("+00:00")
    assert datetime.fromisoformat(end) - datetime.fromisoformat(start) == timedelta(hours=1)


async def test_auto_falls_back_to_v1_when_v2_is_404(aiohttp_server, now):
    fake = FakePlausible(today=now.date(), versions=("v1",))
    server = await aiohttp_server(fake.app())
    client = client_for(server)
    try:
        points = await client.timeseries(resolve(TimeRange.D7, now))
        await client.aggregate(resolve(TimeRange.D7, now))
    finally:
        await client.close()
    assert client.api_version == "v1"
    assert len(points) == 7
    assert [path for _, path, _ in fake.requests].count("/api/v2/query") == 1  # asked once, then v1 only


async def test_a_year_of_days_is_one_request_and_the_same_on_both_apis(aiohttp_server, fake_plausible, now):
    """The forecasts' daily series: every day zero-filled, whatever the API omits."""
    server = await aiohttp_server(fake_plausible.app())
    first, last = now.date() - timedelta(days=364), now.date()
    answers = {}
    for version in ("v2", "v1"):
        client = client_for(server, **{"sources.plausible.api_version": version})
        try:
            before = len(fake_plausible.requests)
            answers[version] = await client.daily(first, last)
            assert len(fake_plausible.requests) - before == 1
        finally:
            await client.close()
    expected = [fake_plausible.daily.get(first + timedelta(days=i), (0, 0)) for i in range(365)]
    for points in answers.values():
        assert [p.bucket.date() for p in points] == [first + timedelta(days=i) for i in range(365)]
        assert [(p.values["visitors"], p.values["pageviews"]) for p in points] == expected


async def test_daily_goal_visitors_on_both_apis(aiohttp_server, fake_plausible, now, monkeypatch):
    """v2 pages through goal x day rows (a small page here, to make it page), v1 asks one
    filtered timeseries per goal; a goal Plausible does not know reads as no conversions."""
    monkeypatch.setattr(plausible_source, "PAGE_LIMIT", 40)
    server = await aiohttp_server(fake_plausible.app())
    first, last = now.date() - timedelta(days=89), now.date()
    goals = ["Deploy Application", "Configure Monitoring", "No Such Goal"]
    expected = {goal: [float(fake_plausible.goals.get(goal, {}).get(first + timedelta(days=i), (0, 0))[0])
                       for i in range(90)] for goal in goals}
    rows = sum(1 for days in fake_plausible.goals.values() for day in days if day >= first)
    for version, requests in (("v2", rows // 40 + 1), ("v1", len(goals))):  # v2: pages until a short one
        client = client_for(server, **{"sources.plausible.api_version": version})
        try:
            before = len(fake_plausible.requests)
            assert await client.daily_goal_visitors(first, last, goals) == expected
            assert len(fake_plausible.requests) - before == requests
        finally:
            await client.close()
    assert sum(expected["Deploy Application"]) > 0


async def test_realtime_and_all_time(aiohttp_server, fake_plausible, now):
    server = await aiohttp_server(fake_plausible.app())
    for version in ("v1", "v2"):
        client = client_for(server, **{"sources.plausible.api_version": version})
        try:
            totals = await client.all_time(now.date())
            realtime = await client.realtime_visitors(now)
        finally:
            await client.close()
        assert totals["pageviews"] == sum(p for _, p in fake_plausible.daily.values())
        assert isinstance(realtime, int)


@pytest.mark.parametrize("fault, code, fragment", [
    ("401", "unauthorized", "API key is invalid"),
    ("500html", "upstream_unavailable", "HTTP 502"),
    ("truncated", "invalid_response", "not valid JSON"),
    ("wrong_shape", "invalid_response", "unexpected response shape"),
    ("429", "rate_limited", "hourly request budget exhausted"),
])
async def test_failures_are_clear_errors_without_the_key(aiohttp_server, fake_plausible, now, caplog, fault, code,
                                                         fragment):
    caplog.set_level(logging.DEBUG)
    fake_plausible.fault = fault
    server = await aiohttp_server(fake_plausible.app())
    client = client_for(server, **{"sources.plausible.api_version": "v2"})
    try:
        with pytest.raises(SourceError) as raised:
            await client.aggregate(resolve(TimeRange.D7, now))
        if fault == "429":  # the budget resets on the UTC hour: no further request before then
            sent = len(fake_plausible.requests)
            with pytest.raises(SourceError):
                await client.aggregate(resolve(TimeRange.D30, now))
            assert len(fake_plausible.requests) == sent
    finally:
        await client.close()
    assert raised.value.code == code and fragment in str(raised.value)
    assert API_KEY not in str(raised.value) and API_KEY not in caplog.text


async def test_retries_5xx_within_the_deadline_and_counts_each_attempt(aiohttp_server, fake_plausible, now):
    fake_plausible.fault = "500html"
    server = await aiohttp_server(fake_plausible.app())
    client = client_for(server, **{"sources.plausible.api_version": "v2", "sources.plausible.max_retries": 2})
    try:
        with pytest.raises(SourceError):
            await client.aggregate(resolve(TimeRange.D7, now))
    finally:
        await client.close()
    assert len(fake_plausible.requests) == 3
    assert client.health.sources["plausible"].requests["server_error"] == 3


async def test_no_answer_is_a_timeout(aiohttp_server, fake_plausible, now):
    fake_plausible.fault = "hang"
    server = await aiohttp_server(fake_plausible.app())
    client = client_for(server, **{"sources.plausible.api_version": "v2", "sources.plausible.timeout_seconds": 0.2,
                                   "sources.plausible.max_retries": 0})
    try:
        with pytest.raises(SourceError) as raised:
            await client.aggregate(resolve(TimeRange.D7, now))
    finally:
        await client.close()
    assert raised.value.code == "timeout"


async def test_connection_refused_is_a_connection_error(unused_tcp_port, now):
    config = service_config(f"http://127.0.0.1:{unused_tcp_port}", **{"sources.plausible.max_retries": 0})
    health = HealthRegistry()
    health.register("plausible")
    client = PlausibleClient(config.sources.plausible, health)
    try:
        with pytest.raises(SourceError) as raised:
            await client.aggregate(resolve(TimeRange.D7, now))
    finally:
        await client.close()
    assert raised.value.code == "connection_error"
