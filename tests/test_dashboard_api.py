"""``GET /api/v1/dashboard``: every section as its own endpoint serves it, failures contained."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from devtools.processes import free_port
from tests.fakes.experimentation import FakeExperimentation
from tests.fakes.feedback import ADMIN_TOKEN, FakeFeedback

TIME_RANGES = ["1h", "6h", "24h", "7d", "30d", "90d"]  # docs/api.md#conventions
# Dashboard key -> the endpoint serving that section alone (docs/api.md#dashboard).
SECTION_ENDPOINTS = {
    "usage_trends": "/api/v1/usage-trends",
    "feature_adoption": "/api/v1/feature-adoption",
    "experiment_results": "/api/v1/experiment-results",
    "feedback": "/api/v1/feedback",
    "user_segments": "/api/v1/user-segments",
    "retention": "/api/v1/retention",
    "lifecycle": "/api/v1/lifecycle",
    "forecast": "/api/v1/forecast",  # at its defaults: active_users, 14 days
    "anomalies": "/api/v1/anomalies",
}
TAKES_NO_TIME_RANGE = {"experiment_results", "forecast"}


def strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


async def get_json(client, path: str) -> tuple[int, dict]:
    response = await client.get(path)
    return response.status, strict_json(await response.text())


def section_path(key: str, time_range: str) -> str:
    path = SECTION_ENDPOINTS[key]
    return path if key in TAKES_NO_TIME_RANGE else f"{path}?time_range={time_range}"


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


async def test_every_section_is_what_its_own_endpoint_serves_for_the_requested_range(make_demo_client):
    client, _ = await make_demo_client()
    status, dashboard = await get_json(client, "/api/v1/dashboard?time_range=24h")
    assert status == 200
    funnel_names = [f["name"] for f in (await get_json(client, "/api/v1/funnels"))[1]["funnels"]]
    assert funnel_names == ["onboarding", "deployment", "service_creation"]
    assert set(dashboard) == {"time_range", "generated_at", "sources", "funnels", *SECTION_ENDPOINTS}
    assert dashboard["time_range"] == "24h" and dashboard["generated_at"].endswith("Z")
    # The service's clock stands still in this test, so even the timestamps and ages must agree.
    for key in SECTION_ENDPOINTS:
        status, alone = await get_json(client, section_path(key, "24h"))
        assert dashboard[key] == alone, key
        if key == "retention":  # weekly cohorts need a week: the endpoint's 400, in the dashboard as well
            assert status == 400 and alone["error"]["code"] == "invalid_time_range"
            continue
        assert status == 200 and "error" not in alone, key
        assert alone["time_range"] == (None if key in TAKES_NO_TIME_RANGE else "24h")
    # Feature adoption and funnels default to 30d alone; in the dashboard they follow the request.
    assert list(dashboard["funnels"]) == funnel_names
    for name in funnel_names:
        status, alone = await get_json(client, f"/api/v1/funnel/{name}?time_range=24h")
        assert status == 200 and dashboard["funnels"][name] == alone
    health = (await get_json(client, "/health"))[1]["sources"]
    assert set(dashboard["sources"]) == set(health) == {"plausible", "experimentation", "feedback", "events"}
    for name, summary in dashboard["sources"].items():
        assert summary == {key: health[name][key] for key in ("status", "last_success", "age_seconds", "error")}
        assert summary["status"] == "up"


async def test_the_default_range_is_7d_and_bad_input_is_a_400(make_client):
    client, _ = await make_client()
    assert (await get_json(client, "/api/v1/dashboard"))[1]["time_range"] == "7d"
    status, body = await get_json(client, "/api/v1/dashboard?time_range=2w")
    assert status == 400 and body["error"]["code"] == "invalid_time_range"
    assert all(value in body["error"]["message"] for value in TIME_RANGES)
    status, body = await get_json(client, "/api/v1/dashboard?status=running")
    assert status == 400 and body["error"]["code"] == "unknown_parameter"


async def test_a_down_or_disabled_source_is_its_sections_error_envelope_and_the_rest_is_served(make_client):
    # Plausible is the fake; experimentation points at a closed port; feedback and events are off.
    client, _ = await make_client(**{"sources.experimentation.url": closed_port_url(),
                                     "sources.experimentation.max_retries": 0})
    status, dashboard = await get_json(client, "/api/v1/dashboard?time_range=7d")
    assert status == 200
    assert dashboard["usage_trends"]["active_users"] >= 0 and dashboard["feature_adoption"]["features"]
    # Each failing section is exactly what its own endpoint answers, minus the 503 status.
    for key, code in (("experiment_results", "connection_error"), ("feedback", "source_disabled"),
                      ("user_segments", "source_disabled")):
        status, alone = await get_json(client, section_path(key, "7d"))
        assert status == 503 and alone["error"]["code"] == code, key
        assert dashboard[key] == alone, key
    # Without events, the default funnels (no Plausible goals) cannot be computed: each says why.
    for name, served in dashboard["funnels"].items():
        assert served == (await get_json(client, f"/api/v1/funnel/{name}?time_range=7d"))[1]
        assert served["error"]["code"] == "source_disabled" and "EVENTS_PATH" in served["error"]["message"]
    assert {name: s["status"] for name, s in dashboard["sources"].items()} == {
        "plausible": "up", "experimentation": "down", "feedback": "disabled", "events": "disabled"}


async def test_a_section_slower_than_the_deadline_times_out_alone(make_client, aiohttp_server):
    release = asyncio.Event()
    slow = FakeExperimentation([], {}).app()
    slow.middlewares.append(held_until(release))
    client, _ = await make_client(**{"sources.experimentation.url": str((await aiohttp_server(slow)).make_url("/")),
                                     "sources.experimentation.timeout_seconds": 5.0,
                                     "server.request_timeout_seconds": 0.5})
    try:
        status, dashboard = await get_json(client, "/api/v1/dashboard")
    finally:
        release.set()
    assert status == 200
    assert dashboard["experiment_results"]["error"]["code"] == "upstream_timeout"
    assert "0.5 s" in dashboard["experiment_results"]["error"]["message"]
    assert "error" not in dashboard["usage_trends"]


def held_until(event: asyncio.Event):
    """A middleware holding an upstream's every answer until ``event`` is set."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        await event.wait()
        return await handler(request)

    return middleware


def waits_for_the_other_upstream(barrier: asyncio.Barrier):
    """A middleware holding an upstream's first request until the other upstream has one too."""
    asked = False

    @web.middleware
    async def middleware(request: web.Request, handler):
        nonlocal asked
        if not asked:
            asked = True
            await asyncio.wait_for(barrier.wait(), 10)
        return await handler(request)

    return middleware


async def test_sections_are_fetched_concurrently(make_client, aiohttp_server):
    # Each upstream answers only once the other has been asked: fetched one after the other, the
    # first would wait past the deadline and its section would be an upstream_timeout envelope.
    barrier = asyncio.Barrier(2)
    apps = [FakeExperimentation([], {}).app(), FakeFeedback([]).app()]
    for app in apps:
        app.middlewares.append(waits_for_the_other_upstream(barrier))
    experimentation, feedback = [str((await aiohttp_server(app)).make_url("/")) for app in apps]
    client, _ = await make_client(**{"sources.experimentation.url": experimentation, "sources.feedback.url": feedback,
                                     "sources.feedback.admin_token": ADMIN_TOKEN,
                                     "server.request_timeout_seconds": 5.0})
    status, dashboard = await get_json(client, "/api/v1/dashboard")
    assert status == 200
    assert dashboard["experiment_results"]["experiments"] == []
    assert dashboard["feedback"]["total"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_are_a_405_envelope(make_client, method):
    client, _ = await make_client()
    response = await client.request(method, "/api/v1/dashboard")
    assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
