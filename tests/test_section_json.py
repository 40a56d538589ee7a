"""Sections encoded once per snapshot are exactly what encoding ``section.to_json`` gives.

Checked for every section of the demo (every body shape the service produces), fresh, stale,
and with a source down, and over HTTP for the section endpoints and the dashboard.
"""

from __future__ import annotations

import pytest

from api.dashboard import build_dashboard
from api.jsonio import dumps
from api.routes import FUNNEL_QUERY, SECTION_JSON, SECTIONS
from exporter.errors import SourceError
from exporter.timeranges import TimeRange


def every_section(service) -> list[tuple[object, dict]]:
    """(area, params) of every section endpoint with its default parameters, and every funnel."""
    def defaults(spec):
        return {name: param.convert(param.default) for name, param in spec.items() if param.default is not None}

    sections = [(service.areas[area], defaults(spec)) for area, spec in SECTIONS.values()]
    sections += [(service.areas["funnels"], defaults(FUNNEL_QUERY) | {"funnel_name": funnel.name})
                 for funnel in service.config.funnels]
    return sections


async def assert_encoded_as_to_json(client, service) -> list[bool]:
    """Checks every section; says which were stale."""
    encoder = client.app[SECTION_JSON]
    stale = []
    for area, params in every_section(service):
        section = await area.section(params)
        encoded = encoder.section(area.key(params), section).fill(encoder.statuses(service.clock()))
        assert encoded.decode() == dumps(section.to_json(service)), area.name
        stale.append(section.stale)
    return stale


async def fail(message: str):
    raise SourceError(message.partition(":")[0], message)


async def test_every_demo_section_fresh_stale_and_with_a_source_down(make_demo_client, clock):
    client, service = await make_demo_client()
    assert not any(await assert_encoded_as_to_json(client, service))  # encoded for the first time
    clock.advance(1.25)
    await assert_encoded_as_to_json(client, service)  # the kept bodies, other ages

    clock.advance(service.config.cache.ttl_seconds)
    assert any(await assert_encoded_as_to_json(client, service))  # stale (refreshes run meanwhile)

    with pytest.raises(SourceError):
        await service.health.track("feedback", lambda: fail("feedback: upstream error HTTP 500"))
    await assert_encoded_as_to_json(client, service)  # "down" with its error, after a health change


async def test_section_endpoints_serve_the_encoded_section(make_client):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    for _ in range(2):  # computed, then from the kept body
        response = await client.get("/api/v1/usage-trends?time_range=30d")
        section = service.areas["usage_trends"].peek({"time_range": TimeRange.parse("30d")})
        assert response.content_type == "application/json"
        assert await response.text() == dumps(section.to_json(service))


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "plausible-only"])
async def test_the_dashboard_endpoint_serves_build_dashboard_encoded(make_demo_client, make_client, clock, demo):
    # Plausible alone: the other sources' sections are error envelopes.
    client, service = await (make_demo_client() if demo else make_client(**{"sources.plausible.api_version": "v2"}))
    for _ in range(3):  # cold (sections awaited), every section fresh, then the kept template
        text = await (await client.get("/api/v1/dashboard?time_range=30d")).text()
        assert text == dumps(await build_dashboard(service, TimeRange.parse("30d")))
        clock.advance(0.75)  # other ages, other generated_at

    # A health change within the same millisecond is not hidden by the response shared within it.
    with pytest.raises(SourceError):
        await service.health.track("plausible", lambda: fail("plausible: upstream error HTTP 500"))
    dashboard = await (await client.get("/api/v1/dashboard?time_range=30d")).json()
    assert dashboard["sources"]["plausible"]["status"] == "down"
    assert dashboard["usage_trends"]["sources"]["plausible"]["status"] == "down"

    clock.advance(service.config.cache.ttl_seconds)  # the kept template must not outlive its sections
    dashboard = await (await client.get("/api/v1/dashboard?time_range=30d")).json()
    assert dashboard["usage_trends"]["stale"] is True
