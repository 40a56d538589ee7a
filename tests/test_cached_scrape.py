"""A cached scrape does no analysis and no rendering: it answers the last response as is.

Analysis runs once per refresh (counted by wrapping the analysis function the usage area calls);
the analytics families are rendered once per snapshot generation and the health families only
when something they show has changed (a request counted, a refresh recorded, a value expired).
"""

from __future__ import annotations

import asyncio

import pytest

import exporter.areas.usage
from api.routes import RENDERER


@pytest.fixture
def analyses(monkeypatch) -> list[dict]:
    """The arguments of every run of the usage analysis so far."""
    calls: list[dict] = []
    analyse = exporter.areas.usage.usage_trends

    def counted(**kwargs):
        calls.append(kwargs)
        return analyse(**kwargs)

    monkeypatch.setattr(exporter.areas.usage, "usage_trends", counted)
    return calls


async def test_cached_scrapes_run_no_analysis_and_render_nothing(make_client, analyses):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    renderer = client.app[RENDERER]
    first = await (await client.get("/metrics")).read()
    windows = len(service.config.metrics.usage_windows)
    assert len(analyses) == windows  # one analysis per published snapshot
    renders = (renderer.analytics_renders, renderer.health_renders)

    for _ in range(5):
        assert await (await client.get("/metrics")).read() == first
    assert len(analyses) == windows
    assert (renderer.analytics_renders, renderer.health_renders) == renders
    assert renderer.render(None)[0] == first  # what was reused is what a render gives now


async def test_a_health_change_renders_health_again_but_not_the_analytics(make_client, analyses):
    client, _ = await make_client(**{"sources.plausible.api_version": "v2"})
    renderer = client.app[RENDERER]
    before = await (await client.get("/metrics")).text()
    analytics_renders, health_renders = renderer.analytics_renders, renderer.health_renders
    analysed = len(analyses)

    # A range /metrics does not publish: upstream requests are counted, nothing published changes.
    assert (await client.get("/api/v1/usage-trends?time_range=90d")).status == 200
    after = await (await client.get("/metrics")).text()

    assert len(analyses) == analysed + 1  # the JSON request's own analysis, nothing for the scrape
    assert renderer.analytics_renders == analytics_renders
    assert renderer.health_renders == health_renders + 1
    assert after != before  # the request counters moved


async def test_a_scrape_after_the_ttl_refreshes_and_renders_again(make_client, analyses, clock):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    renderer = client.app[RENDERER]
    await client.get("/metrics")
    analytics_renders = renderer.analytics_renders
    analysed = len(analyses)

    clock.advance(service.config.cache.ttl_seconds)  # every snapshot turns stale now
    await client.get("/metrics")  # serves the stale values and starts the refresh
    for _ in range(500):  # the refresh completes in the background
        if service.published_snapshots_fresh():
            break
        await asyncio.sleep(0.01)
    await client.get("/metrics")

    assert len(analyses) == analysed + len(service.config.metrics.usage_windows)
    assert renderer.analytics_renders == analytics_renders + 1
