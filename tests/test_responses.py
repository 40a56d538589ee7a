"""Responses encoded once per second: the same bytes as encoding the section afresh, from the
snapshot's own freshness, and never kept past a change of snapshot, health or second."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest

from api.dashboard import build_dashboard
from api.jsonio import dumps
from api.keys import RESPONSES
from api.responses import Responses
from exporter.areas.params import with_defaults
from exporter.errors import SourceError
from exporter.results import to_json
from exporter.timeranges import TimeRange, iso_z
from tests.conftest import settle


def every_section(service) -> list[tuple[object, dict]]:
    """(area, params) of every section endpoint with its default parameters, one per member."""
    sections = []
    for area in service.areas.values():
        params = with_defaults(area.query, {})
        members = area.members() if area.member else [None]
        sections += [(area, params | ({area.member: name} if name else {})) for name in members]
    return sections


def expected(service, snapshot) -> str:
    """The section as plain data, written out here from its parts: the header states the
    snapshot's own time for every source, its age in whole seconds, then the body's fields."""
    moment = iso_z(datetime.fromtimestamp(snapshot.generated_at, timezone.utc))
    age = float(int(service.clock()) - int(snapshot.generated_at))
    sources = {name: {"status": service.health.sources[name].status, "last_success": moment, "age_seconds": age,
                      "error": service.health.sources[name].error} for name in snapshot.sources}
    header = {"time_range": snapshot.time_range, "generated_at": moment, "sources": sources}
    if snapshot.stale:
        header["stale"] = True
    return dumps(header | to_json(snapshot.body))


async def assert_sections_encoded(client, service) -> list[bool]:
    """Checks every section over HTTP; says which were stale."""
    stale = []
    for area, params in every_section(service):
        snapshot = await area.section(params)
        path = area.path.replace("{%s}" % area.member, params.get(area.member, "")) if area.member else area.path
        query = {"time_range": params["time_range"].value} if "time_range" in params else {}
        before = area.peek(params)
        text = await (await client.get(path, params=query)).text()
        # A stale snapshot's refresh runs in the background: the answer is the one before or after it.
        assert text in (expected(service, before), expected(service, area.peek(params))), area.name
        stale.append(snapshot.stale)
    return stale


async def fail(message: str):
    raise SourceError(message.partition(":")[0], message)


async def test_every_demo_section_fresh_stale_and_with_a_source_down(make_demo_client, clock):
    client, service = await make_demo_client()
    assert not any(await assert_sections_encoded(client, service))  # encoded for the first time
    clock.advance(1.25)
    await assert_sections_encoded(client, service)  # the kept bodies, other ages

    clock.advance(service.config.cache.ttl_seconds)
    assert any(await assert_sections_encoded(client, service))  # stale (refreshes run meanwhile)

    # The refreshes end first: one ending later would set its source's health back to up.
    await settle(service)
    with pytest.raises(SourceError):
        await service.health.track("feedback", lambda: fail("feedback: upstream error HTTP 500"))
    await assert_sections_encoded(client, service)  # "down" with its error, after a health change


async def test_a_section_states_the_freshness_of_its_own_snapshot(make_client, clock):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    week = await (await client.get("/api/v1/usage-trends?time_range=7d")).json()
    clock.advance(22)
    await client.get("/api/v1/usage-trends?time_range=30d")  # another range: the source succeeds again now
    again = await (await client.get("/api/v1/usage-trends?time_range=7d")).json()
    plausible = again["sources"]["plausible"]
    assert plausible["last_success"] == week["generated_at"] == again["generated_at"]
    assert plausible["age_seconds"] == 22.0  # the snapshot's age, not the source's latest success
    health = await (await client.get("/health")).json()
    assert health["sources"]["plausible"]["age_seconds"] == 0.0


async def test_responses_within_one_second_are_shared_and_a_new_second_is_not(make_client, clock):
    client, service = await make_client(**{"sources.plausible.api_version": "v2"})
    clock.advance(math.ceil(clock()) - clock() + 0.1)  # a tenth into a second
    responses = client.app[RESPONSES]
    first = await (await client.get("/api/v1/usage-trends")).read()
    clock.advance(0.4)
    assert await (await client.get("/api/v1/usage-trends")).read() is not None
    assert responses.kept(*_only_key(responses)) == first  # same second: the same bytes, kept
    clock.advance(0.7)
    later = json.loads(await (await client.get("/api/v1/usage-trends")).read())
    assert later["sources"]["plausible"]["age_seconds"] == 1.0


def _only_key(responses: Responses):
    (key, encoded), = responses._encoded.items()
    return key, encoded.stamp


@pytest.mark.parametrize("demo", [True, False], ids=["demo", "plausible-only"])
async def test_the_dashboard_endpoint_serves_build_dashboard(make_demo_client, make_client, clock, demo):
    # Plausible alone: the other sources' sections are error envelopes.
    client, service = await (make_demo_client() if demo else make_client(**{"sources.plausible.api_version": "v2"}))
    responses = Responses(service.health, service.clock)
    for _ in range(3):  # cold (sections awaited), every section fresh, then the kept bytes
        text = await (await client.get("/api/v1/dashboard?time_range=30d")).text()
        assert text == dumps(await build_dashboard(service, responses, TimeRange.parse("30d")))
        clock.advance(0.75)  # other ages, other generated_at

    # A health change within the same second is not hidden by the response shared within it.
    with pytest.raises(SourceError):
        await service.health.track("plausible", lambda: fail("plausible: upstream error HTTP 500"))
    dashboard = await (await client.get("/api/v1/dashboard?time_range=30d")).json()
    assert dashboard["sources"]["plausible"]["status"] == "down"
    assert dashboard["usage_trends"]["sources"]["plausible"]["status"] == "down"

    clock.advance(service.config.cache.ttl_seconds)  # the kept bytes must not outlive their sections
    dashboard = await (await client.get("/api/v1/dashboard?time_range=30d")).json()
    assert dashboard["usage_trends"]["stale"] is True
