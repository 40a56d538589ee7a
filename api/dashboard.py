"""``GET /api/v1/dashboard``: every section in one object, fetched concurrently.

Each section is exactly what its own endpoint serves for the requested ``time_range`` (the same
memoized snapshot, the same JSON), asked with that range wherever the endpoint takes one
(experiment results take none) and with the endpoint's defaults otherwise. The sections are the
areas' (each declares its section), in their order; an area with members (funnels) appears as a
mapping from member name to that member's section, in configuration order.

A section that cannot be served right now (its source is down, disabled, or slower than the
request deadline) appears as the error envelope its own endpoint would answer: one failing
upstream never fails the whole dashboard, which answers 200 while the process serves.

When every snapshot is fresh (most requests), nothing is awaited, and the encoded dashboard is
reused until a snapshot or a source's health changes or the second turns (ages and
``generated_at`` are stated in whole seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from exporter.areas.base import Area, Snapshot
from exporter.areas.params import time_range, with_defaults
from exporter.health import second
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

from .jsonio import dumps, json_bytes_response
from .keys import RESPONSES, SERVICE
from .params import parse_query
from .responses import Responses
from .sections import section_key, section_or_error

DASHBOARD_QUERY = {"time_range": time_range("7d")}
HEADER_FIELDS = ("time_range", "generated_at", "sources")  # the dashboard's own; every other key is a section

Part = tuple[Area, dict[str, Any], str | None]  # an area, the parameters asked, the member (if any)


async def dashboard(request: web.Request) -> web.Response:
    requested = parse_query(request, DASHBOARD_QUERY)["time_range"]
    service, responses = request.app[SERVICE], request.app[RESPONSES]
    key = ("dashboard", requested)
    stamp = (service.memo.revision, service.health.revision, second(service.clock()))
    body = responses.kept(key, stamp)
    if body is None:
        parts = dashboard_parts(service, requested)
        served = [area.fresh(params) for area, params, _ in parts]
        if all(served):  # nothing to await: the bytes hold until a snapshot turns stale or changes
            data = assemble(service, responses, requested, parts, served)
            body = responses.keep(key, stamp, dumps(data).encode(), valid_until=service.memo.next_change_at())
        else:
            body = dumps(await build_dashboard(service, responses, requested)).encode()
    return json_bytes_response(body)


async def build_dashboard(service: AnalyticsService, responses: Responses, requested: TimeRange) -> dict[str, Any]:
    """``{"time_range", "generated_at", "sources", <section>: section | envelope, ...}``, an area
    with members as ``{<member>: section | envelope}``; never raises for a source's failure."""
    parts = dashboard_parts(service, requested)
    served: list[Snapshot | dict[str, Any] | None] = [area.fresh(params) for area, params, _ in parts]
    missing = [index for index, snapshot in enumerate(served) if snapshot is None]
    timeout = service.config.server.request_timeout_seconds
    fetched = await asyncio.gather(*(section_or_error(*parts[index][:2], timeout) for index in missing))
    for index, snapshot in zip(missing, fetched):
        served[index] = snapshot
    return assemble(service, responses, requested, parts, served)


def dashboard_parts(service: AnalyticsService, requested: TimeRange) -> list[Part]:
    """Every section of the dashboard, in order, with the parameters its endpoint would parse
    from ``?time_range=<requested>`` alone."""
    parts = []
    for area in service.areas.values():
        params = with_defaults(area.query, {"time_range": requested})
        if area.member is None:
            parts.append((area, params, None))
        else:
            parts += [(area, params | {area.member: name}, name) for name in area.members()]
    return parts


def assemble(service: AnalyticsService, responses: Responses, requested: TimeRange, parts: list[Part],
             served: list[Snapshot | dict[str, Any] | None]) -> dict[str, Any]:
    """The dashboard object from each part's snapshot (or error envelope); stamped when every
    section is in, so ``sources`` tells how the fetches went."""
    sections: dict[str, Any] = {area.name: {} if area.member else None for area in service.areas.values()}
    for (area, params, member), snapshot in zip(parts, served):
        data = snapshot if isinstance(snapshot, dict) else responses.section_data(section_key(area, params), snapshot)
        if member is None:
            sections[area.name] = data
        else:
            sections[area.name][member] = data
    header = {"time_range": requested.value, "generated_at": responses.now_iso(), "sources": responses.sources()}
    return header | sections
