"""Forecasts and anomaly flags end to end (docs/api.md#forecast, docs/api.md#anomalies): the daily
series gathered from the fake Plausible and an events file on loopback, the two endpoints' bad
input, short and constant series, the metrics, one snapshot for every request, and a failing
Plausible beside the events.

Expected forecasts are made here with the analysis from the days the fake serves (a plain count
per day for the events), so what is checked is the wiring: which days, which values, today left
to forecast, the horizon's cut.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.analysis.anomalies import ALERT_SCORE, last_day_check
from exporter.analysis.forecast import DailySeries, analyse
from exporter.results import to_json
from tests.conftest import FakeClock
from tests.fakes.events import Event, write_events

NOW_DT = datetime(2026, 5, 28, 15, 20, 11, tzinfo=timezone.utc)  # a Thursday
NOW = int(NOW_DT.timestamp())
TODAY = NOW_DT.date()
DAY = 86_400
SPIKE = TODAY - timedelta(days=1)  # the last complete day
PLAUSIBLE_SERIES = ["active_users", "pageviews", "feature:Deploy Application", "feature:Create Service",
                    "feature:View Documentation", "feature:Run Pipeline", "feature:Configure Monitoring"]


@pytest.fixture
def clock() -> FakeClock:  # also the service's clock in make_client
    return FakeClock(NOW)


def weekly_traffic(days: int, *, spike_factor: float = 1.0) -> dict[date, tuple[int, int]]:
    """Visitors and page views with a weekday/weekend rhythm and Poisson noise, ``days`` back from
    today; page views of the last complete day multiplied by ``spike_factor``."""
    rng = np.random.default_rng(17)
    table = {}
    for back in range(days):
        day = TODAY - timedelta(days=back)
        level = 300 if day.weekday() < 5 else 60
        pageviews = rng.poisson(3 * level) * (spike_factor if day == SPIKE else 1)
        table[day] = (int(rng.poisson(level)), int(pageviews))
    return table


def expected_analysis(table: dict[date, tuple[int, int]], column: int, name: str):
    """The analysis of one column of the fake's table, from its first day with traffic to today."""
    first = min(day for day, values in table.items() if any(values))
    values = [table.get(first + timedelta(days=i), (0, 0))[column] for i in range((TODAY - first).days + 1)]
    return analyse([DailySeries(name, first, values)])[name]


async def get(client, url: str) -> tuple[int, dict]:
    response = await client.get(url)
    return response.status, await response.json()


def samples(text: str) -> dict[tuple[str, str], float]:
    return {(sample.name, sample.labels.get("series")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_the_forecast_is_made_from_the_days_plausible_serves(make_client, fake_plausible):
    fake_plausible.daily = weekly_traffic(200)
    client, _ = await make_client(**{"sources.plausible.api_version": "v2"})
    for name, column in (("pageviews", 1), ("active_users", 0)):  # active users: Plausible's visitors
        status, body = await get(client, f"/api/v1/forecast?series={name}&horizon=30")
        assert status == 200
        expected = to_json(expected_analysis(fake_plausible.daily, column, name).forecast)
        assert {key: value for key, value in body.items() if key not in ("generated_at", "sources")} == \
            {"time_range": None, **expected}
        assert body["forecast"][0]["timestamp"] == f"{TODAY.isoformat()}T00:00:00Z"  # today is forecast
        assert body["history"][-1]["timestamp"] == f"{(TODAY - timedelta(days=1)).isoformat()}T00:00:00Z"
        assert len(body["history"]) == 90 and len(body["forecast"]) == 30
        assert body["backtest"]["baseline"] == "seasonal_naive" and 0 < body["backtest"]["mase"] < 1.5
    status, body = await get(client, "/api/v1/forecast")  # the defaults: active users, 14 days
    assert status == 200 and body["series"] == "active_users" and len(body["forecast"]) == 14


@pytest.mark.parametrize("query, code, words", [
    ("series=pageview", "invalid_series", ["'pageview'", *PLAUSIBLE_SERIES]),
    ("series=feature:Nope", "invalid_series", ["feature:Deploy Application"]),
    ("series=funnel_entries:onboarding", "invalid_series", ["active_users"]),  # no goals on its steps
    ("horizon=0", "invalid_horizon", ["1 to 30"]),
    ("horizon=31", "invalid_horizon", ["1 to 30"]),
    ("horizon=-1", "invalid_horizon", ["1 to 30"]),
    ("horizon=7.5", "invalid_horizon", ["1 to 30"]),
    ("horizon=%2B7", "invalid_horizon", ["1 to 30"]),
    ("horizon=07", "invalid_horizon", ["1 to 30"]),
    ("horizon=", "invalid_horizon", ["1 to 30"]),
    ("horizon=1&horizon=2", "repeated_parameter", ["once"]),
    ("window=7d", "unknown_parameter", ["series", "horizon"]),
])
async def test_bad_input_is_a_400_naming_the_valid_values(make_client, query, code, words):
    client, _ = await make_client()
    status, body = await get(client, f"/api/v1/forecast?{query}")
    assert status == 400 and body["error"]["code"] == code
    assert all(word in body["error"]["message"] for word in words), body


@pytest.mark.parametrize("horizon", [1, 30])
async def test_the_horizon_bounds_are_served(make_client, fake_plausible, horizon):
    fake_plausible.daily = weekly_traffic(60)
    client, _ = await make_client()
    status, body = await get(client, f"/api/v1/forecast?series=pageviews&horizon={horizon}")
    assert status == 200 and len(body["forecast"]) == horizon


async def test_anomalies_time_range_is_validated(make_client):
    client, _ = await make_client()
    status, body = await get(client, "/api/v1/anomalies?time_range=1y")
    assert status == 400 and body["error"]["code"] == "invalid_time_range" and "30d" in body["error"]["message"]


async def test_a_short_series_is_insufficient_history_and_never_flagged(make_client, fake_plausible):
    fake_plausible.daily = weekly_traffic(15, spike_factor=40.0)  # 14 complete days, the last a huge spike
    client, _ = await make_client()
    status, body = await get(client, "/api/v1/forecast?series=pageviews")
    assert status == 200 and body["status_codes"] == ["insufficient_history"]
    assert body["forecast"] == [] and len(body["history"]) == 14
    assert body["backtest"] == {"mase": None, "coverage": None, "baseline": "seasonal_naive"}
    status, body = await get(client, "/api/v1/anomalies?time_range=90d")
    assert status == 200 and body["anomalies"] == []
    assert body["insufficient_history"] == PLAUSIBLE_SERIES  # the goals share the site's days
    metrics = samples(await (await client.get("/metrics")).text())
    assert ("analytics_anomaly", "pageviews") not in metrics
    assert ("analytics_forecast_expected", "pageviews") not in metrics


async def test_a_series_of_zeros_has_a_band_not_nan(make_client, fake_plausible):
    """Configure Monitoring is a goal nobody ever completed: a series of zeros."""
    fake_plausible.daily = weekly_traffic(120)
    client, _ = await make_client()
    response = await client.get("/api/v1/forecast?series=feature:Configure Monitoring&horizon=7")
    text = await response.text()
    assert response.status == 200 and "NaN" not in text and "Infinity" not in text
    body = await response.json()
    assert all(point["expected"] == 0 and point["lower"] == 0 and 0 < point["upper"] < 5 for point in body["forecast"])
    assert body["status_codes"] == ["no_seasonal_naive_error"] and body["backtest"]["mase"] is None


async def test_a_spike_is_flagged_in_the_endpoint_and_the_metrics(make_client, fake_plausible):
    fake_plausible.daily = weekly_traffic(150, spike_factor=4.0)
    client, _ = await make_client()
    for time_range in ("1h", "24h", "7d", "30d"):
        status, body = await get(client, f"/api/v1/anomalies?time_range={time_range}")
        assert status == 200
        flagged = {(item["series"], item["timestamp"][:10]) for item in body["anomalies"]}
        # A day is listed by every range that holds it: 1h (today only) holds no complete day.
        assert (("pageviews", SPIKE.isoformat()) in flagged) == (time_range != "1h"), time_range
    spike = next(item for item in body["anomalies"] if item["series"] == "pageviews")
    assert spike["direction"] == "up" and spike["score"] > ALERT_SCORE and spike["value"] > spike["upper"]
    assert body["anomalies"] == sorted(body["anomalies"], key=lambda item: item["timestamp"], reverse=True)
    metrics = samples(await (await client.get("/metrics")).text())
    assert metrics[("analytics_anomaly", "pageviews")] == 1
    assert metrics[("analytics_anomaly_score", "pageviews")] == pytest.approx(spike["score"])
    assert metrics[("analytics_anomaly", "active_users")] == 0  # the visitors were ordinary


async def test_the_metrics_are_todays_forecast_and_the_last_complete_days_check(make_client, fake_plausible):
    fake_plausible.daily = weekly_traffic(120)
    client, _ = await make_client()
    metrics = samples(await (await client.get("/metrics")).text())
    assert {series for name, series in metrics if name == "analytics_forecast_expected"} == set(PLAUSIBLE_SERIES)
    for name, column in (("pageviews", 1), ("active_users", 0)):
        analysis = expected_analysis(fake_plausible.daily, column, name)
        today = analysis.forecast.forecast[0]
        assert metrics[("analytics_forecast_expected", name)] == pytest.approx(today.expected, rel=1e-11)
        assert metrics[("analytics_forecast_lower", name)] == pytest.approx(today.lower, rel=1e-11)
        assert metrics[("analytics_forecast_upper", name)] == pytest.approx(today.upper, rel=1e-11)
        check = last_day_check(analysis)
        assert metrics[("analytics_anomaly_score", name)] == pytest.approx(check.score, rel=1e-11)
        assert metrics[("analytics_anomaly", name)] == float(check.anomaly)
    status, body = await get(client, "/api/v1/forecast?series=pageviews&horizon=1")
    assert metrics[("analytics_forecast_upper", "pageviews")] == body["forecast"][0]["upper"]  # the same digits


async def test_every_request_reads_one_snapshot(make_client, fake_plausible):
    """The series are gathered and analysed once per TTL: other series, horizons and ranges cost
    no request, and the same part is the same object (encoded once)."""
    fake_plausible.daily = weekly_traffic(120)
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    year = [(TODAY - timedelta(days=364)).isoformat(), TODAY.isoformat()]

    def gathering(requests) -> list:
        return [body["dimensions"] for _, _, body in requests if body.get("date_range") == year]

    assert (await client.get("/api/v1/forecast")).status == 200
    sent = len(fake_plausible.requests)
    assert gathering(fake_plausible.requests) == [["time:day"], ["event:goal", "time:day"]]  # a request each
    for url in ("/api/v1/forecast?series=pageviews&horizon=3", "/api/v1/forecast?series=feature:Run Pipeline",
                "/api/v1/anomalies", "/api/v1/anomalies?time_range=7d", "/api/v1/dashboard", "/metrics"):
        assert (await client.get(url)).status == 200, url
    assert gathering(fake_plausible.requests[sent:]) == []
    area, params = service.areas["forecast"], {"series": "pageviews", "horizon": 3}
    assert area.peek(params).body is area.peek(dict(params)).body


async def test_a_failing_plausible_beside_the_events_leaves_out_only_its_series(make_client, fake_plausible,
                                                                                 tmp_path):
    events = [Event(f"u{user}", "deployment.deploy.deploy_application", NOW - back * DAY - 3_600 * user)
              for back in range(40) for user in range(5 if (TODAY - timedelta(days=back)).weekday() < 5 else 1)]
    path = write_events(tmp_path / "events.jsonl", events)
    fake_plausible.fault = "500html"
    client, service = await make_client(**{"events.path": str(path)})
    status, body = await get(client, "/api/v1/forecast?series=active_users")
    assert status == 200 and body["sources"]["events"]["status"] == "up"
    assert body["sources"]["plausible"]["status"] == "down"
    history = {point["timestamp"][:10]: point["value"] for point in body["history"]}
    assert history[(TODAY - timedelta(days=1)).isoformat()] == (5 if SPIKE.weekday() < 5 else 1)
    status, body = await get(client, "/api/v1/forecast?series=pageviews")
    assert status == 503 and body["error"]["code"] == "upstream_unavailable" and "plausible" in body["error"]["message"]
    status, body = await get(client, "/api/v1/anomalies")
    assert status == 200
    metrics = samples(await (await client.get("/metrics")).text())
    assert ("analytics_forecast_expected", "active_users") in metrics
    assert ("analytics_forecast_expected", "pageviews") not in metrics
    assert service.health.sources["events"].status == "up"


async def test_without_the_events_and_plausible_the_endpoints_say_what_to_configure(make_client):
    client, _ = await make_client(**{"sources.plausible.url": None})
    for url in ("/api/v1/forecast?series=anything", "/api/v1/anomalies"):
        status, body = await get(client, url)
        assert status == 503 and body["error"]["code"] == "source_disabled", url
        assert "events.path" in body["error"]["message"] and "sources.plausible.url" in body["error"]["message"]
