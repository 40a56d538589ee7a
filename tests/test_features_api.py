"""Feature adoption end to end: Plausible goal queries (v1 and v2), trends, budget, metrics, demo.

Expected numbers are summed straight from the fake Plausible's goal table, and trend labels
recomputed with scipy's ``kendalltau`` and ``theilslopes`` (docs/methods.md#trends), independently of the
service's code.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from api.app import create_app
from exporter.analysis.adoption import (
    FeatureUsage,
    feature_adoption,
    first_complete_week,
)
from exporter.demo.plausible import build_plausible_app
from exporter.demo.population import generate_population
from exporter.service import AnalyticsService
from tests.conftest import FakeClock, service_config
from tests.fakes.plausible import API_KEY, SITE_ID
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
feature_adoption = published(feature_adoption)

WEEKS = 12
DEFAULT_GOALS = ("Deploy Application", "Create Service", "View Documentation", "Run Pipeline",
                 "Configure Monitoring")


# -- independent expectations -------------------------------------------------------------------

def window_days(today: date, days: int) -> list[date]:
    return [today - timedelta(days=back) for back in range(days)]


def goal_sums(fake, goal: str, days: list[date]) -> tuple[int, int]:
    rows = [fake.goals.get(goal, {}).get(day, (0, 0)) for day in days]
    return sum(v for v, _ in rows), sum(e for _, e in rows)


def weekly_goal_visitors(fake, goal: str) -> list[int]:
    this_monday = fake.today - timedelta(days=fake.today.weekday())
    starts = [this_monday - timedelta(weeks=WEEKS - i) for i in range(WEEKS)]
    return [goal_sums(fake, goal, [start + timedelta(days=d) for d in range(7)])[0] for start in starts]


def reference_trend(values: list[float]) -> str:
    """docs/methods.md#trends, written out plainly."""
    n = len(values)
    if n < 6 or np.median(values) < 5:
        return "insufficient_data"
    if len(set(values)) == 1:
        return "stable"
    p_value = stats.kendalltau(values, np.arange(n)).pvalue
    slope, intercept, _, _ = stats.theilslopes(values, np.arange(n))
    base = intercept if intercept > 0 else np.median(values)
    change = slope * (n - 1) / base
    if p_value < 0.05 and abs(change) >= 0.10:
        return "up" if change > 0 else "down"
    return "stable"


def forecasts_request(method: str, path: str, body: dict) -> bool:
    """Whether a request is the forecasts' daily series of the goals (docs/api.md#forecast)."""
    if method == "POST":
        return "time:day" in body.get("dimensions", [])
    return path.endswith("/timeseries") and "filters" in body  # v1: one per goal


def goal_requests(fake) -> list:
    """The Plausible requests only the feature area makes: goals, goal filters, the trend weeks."""
    found = []
    for method, path, body in fake.requests:
        if forecasts_request(method, path, body):
            continue
        if method == "POST":
            dimensions = body.get("dimensions", [])
            feature_query = "event:goal" in dimensions or "time:week" in dimensions or "filters" in body
        else:
            first, _, last = body.get("date", "").partition(",")
            trend_weeks = bool(last) and (date.fromisoformat(last) - date.fromisoformat(first)).days == 7 * WEEKS - 1
            feature_query = body.get("property") == "event:goal" or "filters" in body or trend_weeks
        if feature_query:
            found.append((method, path, body))
    return found


def by_name(body: dict) -> dict[str, dict]:
    return {feature["feature_name"]: feature for feature in body["features"]}


# -- the API against the fake Plausible -----------------------------------------------------------

@pytest.mark.parametrize("api_version", ["v2", "v1"])
async def test_goal_breakdown_gives_uses_rates_and_trends(make_client, fake_plausible, api_version):
    client, _ = await make_client(**{"sources.plausible.api_version": api_version})
    response = await client.get("/api/v1/feature-adoption")
    assert response.status == 200
    body = await response.json()
    days = window_days(fake_plausible.today, 30)
    active = sum(fake_plausible.daily.get(day, (0, 0))[0] for day in days)
    assert body["time_range"] == "30d" and body["active_users"] == active
    assert body["total_features"] == 5 and [f["feature_name"] for f in body["features"]] == list(DEFAULT_GOALS)
    features = by_name(body)
    for goal in DEFAULT_GOALS:
        visitors, events = goal_sums(fake_plausible, goal, days)
        feature = features[goal]
        assert (feature["unique_users"], feature["total_uses"]) == (visitors, events), goal
        assert feature["adoption_rate"] == pytest.approx(visitors / active)
        assert feature["all_time_uses"] == sum(e for _, e in fake_plausible.goals.get(goal, {}).values())
        weekly = weekly_goal_visitors(fake_plausible, goal)
        assert [p["value"] for p in feature["weekly_users"]] == weekly
        assert feature["trend"] == reference_trend(weekly), goal
        assert feature["trend_detail"]["n_points"] == WEEKS
    # The fake plants one rising, one falling, one flat and one thin goal; one is never completed.
    assert [features[g]["trend"] for g in DEFAULT_GOALS] == ["up", "down", "stable", "insufficient_data",
                                                             "insufficient_data"]
    assert features["Configure Monitoring"]["unique_users"] == 0  # absent from every breakdown
    assert features["Configure Monitoring"]["status_codes"] == ["usage_dates_unavailable"]
    rates = {g: features[g]["adoption_rate"] for g in DEFAULT_GOALS}
    assert body["most_adopted"] == max(rates, key=rates.get)
    assert body["least_adopted"] == "Configure Monitoring"
    assert body["unknown_goals"] == [] and body["sources"]["plausible"]["status"] == "up"


async def test_v1_and_v2_agree(make_client):
    bodies = []
    for version in ("v1", "v2"):
        client, _ = await make_client(**{"sources.plausible.api_version": version})
        body = await (await client.get("/api/v1/feature-adoption", params={"time_range": "7d"})).json()
        bodies.append({k: body[k] for k in ("features", "adoption_trend", "most_adopted", "least_adopted")})
    assert bodies[0] == bodies[1]


async def test_adoption_trend_is_the_mean_weekly_rate_of_the_features(make_client, fake_plausible):
    client, _ = await make_client(**{"sources.plausible.api_version": "v2"})
    body = await (await client.get("/api/v1/feature-adoption")).json()
    this_monday = fake_plausible.today - timedelta(days=fake_plausible.today.weekday())
    for i, point in enumerate(body["adoption_trend"]):
        start = this_monday - timedelta(weeks=WEEKS - i)
        week = [start + timedelta(days=d) for d in range(7)]
        active = sum(fake_plausible.daily.get(day, (0, 0))[0] for day in week)
        rates = [goal_sums(fake_plausible, goal, week)[0] / active for goal in DEFAULT_GOALS]
        assert point["timestamp"] == f"{start.isoformat()}T00:00:00Z"
        assert point["value"] == pytest.approx(np.mean(rates))


@pytest.mark.parametrize("api_version", ["v2", "v1"])
async def test_an_unknown_goal_is_reported_once_and_does_not_fail_the_refresh(make_client, fake_plausible, clock,
                                                                             caplog, api_version):
    caplog.set_level(logging.WARNING)
    features = [{"name": g, "goal": g} for g in DEFAULT_GOALS] + [
        {"name": "Rocket Launch", "goal": "Launch Rocket"},
        {"name": "Chat Ops", "event": "chatops.run.command"},
    ]
    client, service = await make_client(**{"sources.plausible.api_version": api_version, "features": features})
    for _ in range(3):
        refreshed = await client.post("/api/v1/metrics/refresh")
        assert (await refreshed.json())["sources"]["plausible"] == "refreshed"
        clock.advance(service.config.cache.ttl_seconds + 1)
    body = await (await client.get("/api/v1/feature-adoption")).json()
    rocket, chat = by_name(body)["Rocket Launch"], by_name(body)["Chat Ops"]
    assert body["unknown_goals"] == ["Launch Rocket"] and "unknown_goals" in body["status_codes"]
    assert "unknown_goal" in rocket["status_codes"] and "needs_events_source" in chat["status_codes"]
    for feature in (rocket, chat):
        assert feature["unique_users"] is feature["adoption_rate"] is feature["all_time_uses"] is None
        assert feature["trend"] == "insufficient_data"
    assert by_name(body)["Deploy Application"]["unique_users"] > 0
    assert body["sources"]["plausible"]["status"] == "up"
    warnings = [r for r in caplog.records if "Launch Rocket" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # The unknown goal is asked about again each cycle (so a fix shows up); the idle goal Plausible
    # confirmed once is not.
    probes = [body["filters"][0][2][0] if method == "POST" else body["filters"].partition("==")[2]
              for method, path, body in fake_plausible.requests
              if "filters" in body and not forecasts_request(method, path, body)]
    assert probes.count("Configure Monitoring") == 1 and probes.count("Launch Rocket") >= 2
    metrics = await (await client.get("/metrics")).text()
    assert 'feature_name="Rocket Launch"' not in metrics and 'feature_name="Chat Ops"' not in metrics


@pytest.mark.parametrize("api_version, feature_requests", [("v2", 4 + 1), ("v1", 2 + WEEKS + 1 + 1)])
async def test_request_budget_per_refresh_cycle_fits_plausible_io(make_client, fake_plausible, api_version,
                                                                  feature_requests):
    """Default config, one /metrics scrape = one refresh cycle of everything published.

    Feature area: window breakdown + all-time breakdown + weekly series (v2: 2, v1: 12 weekly
    breakdowns + 1 timeseries) + one probe for the goal that was never completed.
    """
    client, service = await make_client(**{"sources.plausible.api_version": api_version})
    await client.get("/metrics")
    per_cycle = service.requests_per_cycle("plausible")
    assert per_cycle * 3600 / service.config.cache.ttl_seconds <= 600
    assert len(goal_requests(fake_plausible)) == feature_requests
    # Another window shares the weekly series, the all-time figures, the probe and the usage
    # area's snapshot (already loaded for its own 7d metrics): it costs one breakdown.
    before = len(fake_plausible.requests)
    assert (await client.get("/api/v1/feature-adoption", params={"time_range": "7d"})).status == 200
    assert len(fake_plausible.requests) - before == 1


async def test_metrics_have_the_contract_names_labels_and_values(make_client):
    client, _ = await make_client(**{"sources.plausible.api_version": "v2", "metrics.feature_windows": ["7d", "30d"]})
    bodies = {w: await (await client.get("/api/v1/feature-adoption", params={"time_range": w})).json()
              for w in ("7d", "30d")}
    families = {f.name: f for f in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    expected = {"analytics_feature_adoption_rate": ("gauge", {"feature_name", "window"}),
                "analytics_feature_unique_users": ("gauge", {"feature_name", "window"}),
                "analytics_feature_usage": ("counter", {"feature_name"}),
                "analytics_feature_trend": ("gauge", {"feature_name", "trend"})}
    for name, (kind, labels) in expected.items():
        assert families[name].type == kind, name
        assert all(set(s.labels) == labels for s in families[name].samples), name
    assert {s.name for s in families["analytics_feature_usage"].samples} == {"analytics_feature_usage_total"}
    for window, body in bodies.items():
        for feature in body["features"]:
            key = {"feature_name": feature["feature_name"], "window": window}
            (rate,) = [s.value for s in families["analytics_feature_adoption_rate"].samples if s.labels == key]
            (users,) = [s.value for s in families["analytics_feature_unique_users"].samples if s.labels == key]
            assert rate == pytest.approx(feature["adoption_rate"]) and users == feature["unique_users"]
    for feature in bodies["30d"]["features"]:
        states = {s.labels["trend"]: s.value for s in families["analytics_feature_trend"].samples
                  if s.labels["feature_name"] == feature["feature_name"]}
        assert states == {t: float(t == feature["trend"]) for t in ("up", "down", "stable", "insufficient_data")}
        (usage,) = [s.value for s in families["analytics_feature_usage"].samples
                    if s.labels["feature_name"] == feature["feature_name"]]
        assert usage == feature["all_time_uses"]


async def test_invalid_time_range_is_a_400(make_client):
    client, _ = await make_client()
    response = await client.get("/api/v1/feature-adoption", params={"time_range": "week"})
    assert response.status == 400 and "30d" in (await response.json())["error"]["message"]


async def test_a_plausible_outage_is_a_503_not_a_partial_section(make_client, fake_plausible):
    fake_plausible.fault = "500html"
    client, _ = await make_client()
    response = await client.get("/api/v1/feature-adoption")
    assert response.status == 503 and (await response.json())["error"]["code"] == "upstream_unavailable"


# -- demo ---------------------------------------------------------------------------------------

async def test_demo_planted_trends_come_out_up_down_and_stable(aiohttp_client, aiohttp_server):
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    clock = FakeClock(now.timestamp())
    population = generate_population(42, now=now)
    server = await aiohttp_server(build_plausible_app(population, api_key=API_KEY, site_id=SITE_ID, clock=clock))
    service = AnalyticsService(service_config(str(server.make_url("/"))), clock=clock)
    client = await aiohttp_client(create_app(service))
    body = await (await client.get("/api/v1/feature-adoption")).json()
    trends = {name: feature["trend"] for name, feature in by_name(body).items()}
    # The population favours monitoring more and pipelines less over time; the rest stays level.
    assert trends == {"Configure Monitoring": "up", "Run Pipeline": "down", "Deploy Application": "stable",
                      "Create Service": "stable", "View Documentation": "stable"}


# -- the pure adoption analysis -------------------------------------------------------------------

WEEK_STARTS = [datetime(2026, 9, 7, tzinfo=timezone.utc) + timedelta(weeks=i) for i in range(6)]


def usage(name: str, users: float | None, weekly: list[float] | None = None, codes=()) -> FeatureUsage:
    return FeatureUsage(name, users, None if users is None else 2 * users, None if users is None else 10 * users,
                        weekly if weekly is not None or users is None else [users] * 6, tuple(codes))


def test_adoption_rate_is_clipped_ranked_and_null_without_active_users():
    features = [usage("a", 30), usage("b", 120), usage("c", 30.4), usage("d", None, codes=["unknown_goal"])]
    body = feature_adoption(features, active_users=100, week_starts=WEEK_STARTS, weekly_active=[50] * 6)
    rates = {f["feature_name"]: f["adoption_rate"] for f in body["features"]}
    assert rates == {"a": 0.3, "b": 1.0, "c": pytest.approx(0.304), "d": None}
    assert body["most_adopted"] == "b" and body["least_adopted"] == "a"
    empty = feature_adoption(features[:1], active_users=0, week_starts=WEEK_STARTS, weekly_active=[0] * 6)
    assert empty["features"][0]["adoption_rate"] is None
    assert "no_active_users" in empty["features"][0]["status_codes"]
    assert empty["most_adopted"] is None and empty["status_codes"] == ["weeks_without_active_users"]
    assert all(point["value"] is None for point in empty["adoption_trend"])


def test_adoption_trend_averages_weekly_rates_of_observable_features():
    a, b = [10, 20, 30, 40, 50, 60], [5, 5, 5, 5, 5, 500]
    active = [100, 100, 100, 100, 100, 0]
    body = feature_adoption([usage("a", 1, a), usage("b", 1, b), usage("x", None)], active_users=1,
                            week_starts=WEEK_STARTS, weekly_active=active)
    expected = [np.mean([x / 100, min(y / 100, 1.0)]) for x, y in zip(a[:5], b[:5])] + [None]
    assert [p["value"] for p in body["adoption_trend"]] == pytest.approx(expected)
    assert body["adoption_trend"][0]["timestamp"] == "2026-09-07T00:00:00Z"
    none = feature_adoption([usage("x", None)], active_users=1, week_starts=WEEK_STARTS, weekly_active=active)
    assert none["status_codes"] == ["no_observable_features"]


def test_series_must_match_the_trend_weeks():
    with pytest.raises(ValueError):
        feature_adoption([usage("a", 1, [1, 2])], active_users=1, week_starts=WEEK_STARTS, weekly_active=[1] * 6)
    with pytest.raises(ValueError):
        FeatureUsage("a", 1, 1, 1, None)


@pytest.mark.parametrize("today, first", [
    (date(2026, 11, 25), date(2026, 8, 31)),  # a Wednesday: its own week is not complete
    (date(2026, 11, 23), date(2026, 8, 31)),  # a Monday: the same twelve whole weeks
    (date(2026, 11, 22), date(2026, 8, 24)),  # a Sunday: its week is still running
])
def test_first_complete_week(today, first):
    assert first_complete_week(today, 12) == first
    assert first.weekday() == 0 and first + timedelta(weeks=12) <= today
