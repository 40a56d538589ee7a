"""Usage trends through every layer: JSON, /metrics, /health, errors, cache, auth and CORS."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import settle
from tests.fakes.plausible import API_KEY

USAGE_METRICS = {
    "analytics_total_users", "analytics_active_users", "analytics_page_views", "analytics_unique_visitors",
    "analytics_avg_session_duration_seconds", "analytics_bounce_rate_percentage", "analytics_current_visitors",
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_usage_trends_numbers_agree(make_client):
    client, _ = await make_client()
    response = await client.get("/api/v1/usage-trends", params={"time_range": "7d"})
    assert response.status == 200
    body = await response.json()
    assert body["time_range"] == "7d" and body["generated_at"].endswith("Z")
    assert body["sources"]["plausible"]["status"] == "up"
    assert len(body["users_over_time"]) == len(body["pageviews_over_time"]) == 7
    # pageviews add up across buckets; visitors do not have to (one person on two days counts twice)
    assert sum(p["value"] for p in body["pageviews_over_time"]) == body["page_views"]
    assert body["active_users"] == body["unique_visitors"] <= sum(p["value"] for p in body["users_over_time"])
    assert body["top_pages"] == sorted(body["top_pages"], key=lambda r: -r["visitors"])
    assert body["basis"] == "plausible_visitors"


async def test_bad_time_range_is_a_400_naming_the_valid_values(make_client):
    client, _ = await make_client()
    response = await client.get("/api/v1/usage-trends?time_range=2w")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_time_range" and "1h, 6h, 24h, 7d, 30d, 90d" in error["message"]
    response = await client.get("/api/v1/usage-trends?window=7d")
    assert response.status == 400 and "time_range" in (await response.json())["error"]["message"]


async def test_metrics_carry_every_usage_metric_per_window(make_client):
    client, _ = await make_client()
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert USAGE_METRICS <= names
    values = samples(text)
    assert values[("analytics_source_up", (("source", "plausible"),))] == 1.0
    for window in ("1d", "7d", "30d"):
        assert values[("analytics_active_users", (("window", window),))] > 0
    assert values[("analytics_page_views_total", ())] > 0


async def test_metrics_and_json_read_the_same_snapshot(make_client):
    client, service = await make_client()
    text = await (await client.get("/metrics")).text()
    body = await (await client.get("/api/v1/usage-trends?time_range=7d")).json()
    assert samples(text)[("analytics_active_users", (("window", "7d"),))] == body["active_users"]


async def test_openmetrics_when_asked(make_client):
    client, _ = await make_client()
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    text = await response.text()
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1


async def test_cached_scrapes_do_not_rerender_the_analytics(make_client):
    client, _ = await make_client()
    await client.get("/metrics")
    renderer = client.app[__import__("api.routes", fromlist=["RENDERER"]).RENDERER]
    renders = renderer.analytics_renders
    for _ in range(5):
        await client.get("/metrics")
    assert renderer.analytics_renders == renders


async def test_100_concurrent_cold_requests_cost_one_upstream_request_per_query(make_client, fake_plausible):
    client, _ = await make_client(**{"sources.plausible.api_version": "v2"})
    responses = await asyncio.gather(*(client.get("/api/v1/usage-trends?time_range=30d") for _ in range(100)))
    assert {r.status for r in responses} == {200}
    queries = [str(sorted(body.items())) for _, _, body in fake_plausible.requests]
    assert len(queries) == len(set(queries)) == 6  # aggregate, series, pages, sources, realtime, all-time


@pytest.mark.parametrize("fault", ["401", "429", "500html", "truncated",
                                   pytest.param("hang", marks=pytest.mark.slow)])  # waits out real timeouts
async def test_plausible_failure_keeps_serving_and_tells_the_truth(make_client, fake_plausible, clock, caplog, fault):
    caplog.set_level(logging.DEBUG)
    client, service = await make_client(**{"sources.plausible.api_version": "v2",
                                           "sources.plausible.timeout_seconds": 0.3})
    assert (await client.get("/metrics")).status == 200  # warm: everything up
    fake_plausible.fault = fault
    clock.advance(service.config.cache.ttl_seconds + 1)  # stale: the next scrape refreshes and fails
    await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
    await settle(service)  # the background refresh gives up (timeouts, retries)
    stale = samples(await (await client.get("/metrics")).text())
    assert stale[("analytics_source_up", (("source", "plausible"),))] == 0.0
    assert ("analytics_active_users", (("window", "7d"),)) in stale  # still served: within 2 x TTL
    clock.advance(service.config.cache.ttl_seconds)  # past the hard limit: data dropped
    response = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert response.status == 200
    gone = samples(await response.text())
    assert not any(name in USAGE_METRICS or name == "analytics_page_views_total" for name, _ in gone)
    assert gone[("analytics_source_up", (("source", "plausible"),))] == 0.0
    api = await client.get("/api/v1/usage-trends?time_range=7d")
    assert api.status == 503
    error = (await api.json())["error"]
    assert "plausible" in error["message"]
    health = await (await client.get("/health")).json()
    assert health["status"] == "degraded" and health["sources"]["plausible"]["status"] == "down"
    everything = caplog.text + str(error) + str(health) + await (await client.get("/metrics")).text()
    assert API_KEY not in everything


async def test_recovery_without_restart(make_client, fake_plausible, clock):
    fake_plausible.fault = "500html"
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    assert (await client.get("/api/v1/usage-trends")).status == 503
    fake_plausible.fault = None
    clock.advance(service.memo.failure_backoff)
    assert (await client.get("/api/v1/usage-trends")).status == 200
    assert (await (await client.get("/health")).json())["status"] == "healthy"


async def test_disabled_source_answers_503_naming_the_setting(make_client):
    client, _ = await make_client(**{"sources.plausible.site_id": None})
    response = await client.get("/api/v1/usage-trends")
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "source_disabled" and "PLAUSIBLE_SITE_ID" in error["message"]
    text = await (await client.get("/metrics")).text()
    assert "analytics_active_users" not in text and 'analytics_source_up{source="plausible"}' not in text


async def test_api_token_protects_the_api_only(make_client):
    client, _ = await make_client(**{"server.api_token": "s3cret-token"})
    assert (await client.get("/api/v1/usage-trends")).status == 401
    wrong = await client.get("/api/v1/usage-trends", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "unauthorized"
    right = await client.get("/api/v1/usage-trends", headers={"Authorization": "Bearer s3cret-token"})
    assert right.status == 200
    assert (await client.get("/metrics")).status == 200 and (await client.get("/health")).status == 200


async def test_cors_answers_only_configured_origins(make_client):
    client, _ = await make_client(**{"server.cors_allowed_origins": ["https://portal.fawkes.idp"]})
    ok = await client.get("/api/v1/usage-trends", headers={"Origin": "https://portal.fawkes.idp"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://portal.fawkes.idp"
    other = await client.get("/api/v1/usage-trends", headers={"Origin": "https://portal.fawkes.idp.evil"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await client.options("/api/v1/usage-trends", headers={
        "Origin": "https://portal.fawkes.idp", "Access-Control-Request-Method": "GET"})
    assert preflight.status == 204 and "GET" in preflight.headers["Access-Control-Allow-Methods"]
    refused = await client.options("/api/v1/usage-trends", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers


async def test_unknown_path_and_wrong_method_use_the_envelope(make_client):
    client, _ = await make_client()
    missing = await client.get("/api/v1/nope")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    wrong = await client.delete("/api/v1/usage-trends")
    assert wrong.status == 405 and (await wrong.json())["error"]["code"] == "method_not_allowed"


async def test_refresh_endpoint_reports_per_source(make_client, fake_plausible):
    client, _ = await make_client()
    response = await client.post("/api/v1/metrics/refresh")
    assert response.status == 200
    assert (await response.json())["sources"]["plausible"] == "refreshed"


async def test_forced_refreshes_are_rate_limited(make_client, fake_plausible, clock):
    client, service = await make_client()
    assert (await client.post("/api/v1/metrics/refresh")).status == 200
    sent = len(fake_plausible.requests)
    too_soon = await client.post("/api/v1/metrics/refresh")
    assert too_soon.status == 429 and (await too_soon.json())["error"]["code"] == "refresh_too_soon"
    assert int(too_soon.headers["Retry-After"]) == service.config.server.min_forced_refresh_seconds
    assert len(fake_plausible.requests) == sent  # refused without asking any upstream
    clock.advance(service.config.server.min_forced_refresh_seconds)
    assert (await client.post("/api/v1/metrics/refresh")).status == 200


async def test_request_budget_is_counted_and_fits_plausible_io(make_client, fake_plausible):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    await client.get("/metrics")  # one full refresh cycle of everything /metrics publishes
    health = await (await client.get("/health")).json()
    per_cycle = health["sources"]["plausible"]["requests_per_refresh_cycle"]
    assert per_cycle == len(fake_plausible.requests) > 0  # what the upstream really saw
    assert health["sources"]["plausible"]["projected_hourly_requests"] == per_cycle * 3600 / 300 <= 600
    assert health["sources"]["plausible"]["requests_last_hour"] == per_cycle


async def test_the_cycle_cost_is_the_configured_one_and_the_spending_is_counted_apart(make_client, fake_plausible,
                                                                                      clock):
    client, _ = await make_client(**{"sources.plausible.api_version": "v2"})
    await client.get("/metrics")
    cycle = (await (await client.get("/health")).json())["sources"]["plausible"]["requests_per_refresh_cycle"]
    # A caller asks for ranges /metrics does not publish: requests are spent, the cycle is unchanged.
    for time_range in ("90d", "6h"):
        assert (await client.get("/api/v1/usage-trends", params={"time_range": time_range})).status == 200
    plausible = (await (await client.get("/health")).json())["sources"]["plausible"]
    assert plausible["requests_per_refresh_cycle"] == cycle
    assert plausible["requests_last_hour"] == len(fake_plausible.requests) > cycle
    clock.advance(3601)  # an hour later the spending is forgotten, the cycle's cost is not
    plausible = (await (await client.get("/health")).json())["sources"]["plausible"]
    assert plausible["requests_last_hour"] == 0 and plausible["requests_per_refresh_cycle"] == cycle
