"""``GET /api/v1/dashboard``: every section in one object, fetched concurrently.

Each section is exactly what its own endpoint serves for the requested ``time_range`` (the same
memoized snapshot, the same JSON), asked with that range wherever the endpoint takes one
(experiment results take none) and with the endpoint's defaults otherwise. The sections come from
the route table (``SECTIONS``), so a new section endpoint appears here without a change.

``funnels`` is a mapping from funnel name to that funnel's section, one entry per configured
funnel in configuration order (a mapping, so a client reads ``funnels.onboarding`` directly).

A section that cannot be served right now (its source is down, disabled, or slower than the
request deadline) appears as the error envelope its own endpoint would answer: one failing
upstream never fails the whole dashboard, which answers 200 while the process serves.

When every snapshot is fresh (most requests), nothing is awaited: no tasks, no deadlines. The
endpoint writes each section with :class:`~api.section_json.SectionJson`, whose bodies are
encoded once per snapshot; :func:`build_dashboard` gives the same object as plain data.
``generated_at`` is the millisecond the dashboard was put together in (like the sources' ages,
stated to the millisecond), so requests within one millisecond share one response.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from aiohttp import web

from exporter.areas.base import Area, Section
from exporter.areas.funnels import FunnelsArea
from exporter.errors import SourceError
from exporter.health import millisecond
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

from .errors import INTERNAL_ERROR_MESSAGE, deadline_message, envelope, source_error_message
from .jsonio import json_bytes_response
from .params import Param, parse_query, time_range
from .routes import FUNNEL_QUERY, SECTION_JSON, SECTIONS, SERVICE
from .section_json import GENERATED_AT, SectionJson, Template, encoded, iso_at, json_object, sources_object

log = logging.getLogger(__name__)

DASHBOARD_QUERY = {"time_range": time_range("7d")}
FUNNELS = FunnelsArea.name
# The dashboard's own fields; every other key is a section.
HEADER_FIELDS = ("time_range", "generated_at", "sources")


@dataclass(frozen=True)
class Part:
    """One section of the dashboard: the area and parameters it comes from, and what it serves."""

    area: Area
    params: dict[str, Any]
    served: Section | dict[str, Any]  # the snapshot, or the error envelope


Parts = tuple[dict[str, Part], dict[str, Part]]  # the sections by area name, the funnels by funnel name


async def dashboard(request: web.Request) -> web.Response:
    requested = parse_query(request, DASHBOARD_QUERY)["time_range"]
    service, encoder = request.app[SERVICE], request.app[SECTION_JSON]
    key = ("dashboard", requested)
    template = encoder.reusable(key)
    if template is None:
        fresh = fresh_parts(service, requested)
        template = dashboard_template(service, encoder, requested, fresh or await dashboard_parts(service, requested))
        if fresh is not None:  # nothing was awaited: the template holds until a snapshot changes
            encoder.keep(key, template)
    # Stamped once every section is in, like build_dashboard.
    return json_bytes_response(encoder.response(key, template, service.clock()))


def dashboard_template(service: AnalyticsService, encoder: SectionJson, requested: TimeRange,
                       parts: Parts) -> Template:
    """The dashboard as :func:`build_dashboard` has it, with the sources' status and
    ``generated_at`` left as holes."""
    def section(part: Part) -> Template | bytes:
        if isinstance(part.served, Section):
            return encoder.section(part.area.key(part.params), part.served)
        return encoded(part.served)

    areas, funnels = parts
    header = [("time_range", encoded(requested.value)), ("generated_at", GENERATED_AT),
              ("sources", sources_object(service.health.sources))]
    sections = [(name, section(part)) for name, part in areas.items()]
    sections.append((FUNNELS, json_object((name, section(part)) for name, part in funnels.items())))
    return json_object(header + sections)


async def build_dashboard(service: AnalyticsService, requested: TimeRange) -> dict[str, Any]:
    """``{"time_range", "generated_at", "sources", <area name>: section | envelope, ...,
    "funnels": {<funnel name>: section | envelope}}``; never raises for a source's failure."""
    areas, funnels = await dashboard_parts(service, requested)

    def plain(part: Part) -> dict[str, Any]:
        return part.served.to_json(service) if isinstance(part.served, Section) else part.served

    sections: dict[str, Any] = {name: plain(part) for name, part in areas.items()}
    sections[FUNNELS] = {name: plain(part) for name, part in funnels.items()}
    # Stamped once every section is in, so "sources" tells how the fetches above went.
    header = {"time_range": requested.value, "generated_at": iso_at(millisecond(service.clock())),
              "sources": {name: service.health.summary(name) for name in service.health.sources}}
    return header | sections


def fresh_parts(service: AnalyticsService, requested: TimeRange) -> Parts | None:
    """Every part from its fresh snapshot, without awaiting anything; None unless all are fresh."""
    wanted = _wanted(service, requested)
    served = [area.fresh(params) for area, params in wanted.values()]
    if not all(served):
        return None
    return _parts(service, wanted, served)


async def dashboard_parts(service: AnalyticsService, requested: TimeRange) -> Parts:
    """Every part, the snapshots that are not fresh fetched concurrently."""
    wanted = _wanted(service, requested)
    served: list[Section | dict[str, Any] | None] = [area.fresh(params) for area, params in wanted.values()]
    missing = [index for index, section in enumerate(served) if section is None]
    if missing:
        timeout = service.config.server.request_timeout_seconds
        wanted_list = list(wanted.values())
        fetched = await asyncio.gather(*(section_or_error(*wanted_list[index], timeout) for index in missing))
        for index, section in zip(missing, fetched):
            served[index] = section
    return _parts(service, wanted, served)


def _wanted(service: AnalyticsService, requested: TimeRange) -> dict[tuple[str, str], tuple[Area, dict[str, Any]]]:
    """(area, params) per ("area", area name) and per ("funnel", funnel name), in dashboard order."""
    wanted = {("area", area): (service.areas[area], section_params(spec, requested))
              for area, spec in SECTIONS.values()}
    for funnel in service.config.funnels:
        params = section_params(FUNNEL_QUERY, requested) | {"funnel_name": funnel.name}
        wanted[("funnel", funnel.name)] = (service.areas[FUNNELS], params)
    return wanted


def _parts(service: AnalyticsService, wanted: dict[tuple[str, str], tuple[Area, dict[str, Any]]],
           served: list[Any]) -> Parts:
    areas: dict[str, Part] = {}
    funnels: dict[str, Part] = {}
    for ((kind, name), (area, params)), section in zip(wanted.items(), served):
        (areas if kind == "area" else funnels)[name] = Part(area, params, section)
    return areas, funnels


def section_params(spec: Mapping[str, Param], requested: TimeRange) -> dict[str, Any]:
    """What a section's endpoint parses from ``?time_range=<requested>`` alone: the requested range
    where it takes one, its own defaults for every other parameter."""
    params = {name: param.convert(param.default) for name, param in spec.items() if param.default is not None}
    if "time_range" in spec:
        params["time_range"] = requested
    return params


async def section_or_error(area: Area, params: dict[str, Any], timeout: float) -> Section | dict[str, Any]:
    """The section its endpoint serves, or the error envelope its endpoint would answer."""
    try:
        return await asyncio.wait_for(area.section(params), timeout)
    except SourceError as error:
        return envelope(error.code, source_error_message(error))
    except asyncio.TimeoutError:
        # The memo shields the load: it completes in the background for the next request.
        return envelope("upstream_timeout", deadline_message(timeout))
    except Exception:  # noqa: BLE001 - a bug in one area must not take the other sections down
        log.exception("unhandled error computing the %s section of the dashboard", area.name)
        return envelope("internal_error", INTERNAL_ERROR_MESSAGE)
