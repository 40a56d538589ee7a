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
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, Mapping

from aiohttp import web

from exporter.areas.funnels import FunnelsArea
from exporter.errors import SourceDisabled, SourceError
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange, iso_z

from .errors import envelope
from .jsonio import json_response
from .params import Param, parse_query, time_range
from .routes import FUNNEL_QUERY, SECTIONS, SERVICE

log = logging.getLogger(__name__)

DASHBOARD_QUERY = {"time_range": time_range("7d")}
FUNNELS = FunnelsArea.name
# The dashboard's own fields; every other key is a section.
HEADER_FIELDS = ("time_range", "generated_at", "sources")


async def dashboard(request: web.Request) -> web.Response:
    params = parse_query(request, DASHBOARD_QUERY)
    return json_response(await build_dashboard(request.app[SERVICE], params["time_range"]))


async def build_dashboard(service: AnalyticsService, requested: TimeRange) -> dict[str, Any]:
    """``{"time_range", "generated_at", "sources", <area name>: section | envelope, ...,
    "funnels": {<funnel name>: section | envelope}}``; never raises for a source's failure."""
    timeout = service.config.server.request_timeout_seconds
    areas = {area: section_params(spec, requested) for area, spec in SECTIONS.values()}
    funnels = {funnel.name: section_params(FUNNEL_QUERY, requested) | {"funnel_name": funnel.name}
               for funnel in service.config.funnels}
    served = await asyncio.gather(
        *(section_or_error(service, area, params, timeout) for area, params in areas.items()),
        *(section_or_error(service, FUNNELS, params, timeout) for params in funnels.values()))
    sections: dict[str, Any] = dict(zip(areas, served[:len(areas)]))
    sections[FUNNELS] = dict(zip(funnels, served[len(areas):]))
    # Stamped once every section is in, so "sources" tells how the fetches above went.
    header = {"time_range": requested.value,
              "generated_at": iso_z(datetime.fromtimestamp(service.clock(), timezone.utc)),
              "sources": {name: service.health.summary(name) for name in service.health.sources}}
    return header | sections


def section_params(spec: Mapping[str, Param], requested: TimeRange) -> dict[str, Any]:
    """What a section's endpoint parses from ``?time_range=<requested>`` alone: the requested range
    where it takes one, its own defaults for every other parameter."""
    params = {name: param.convert(param.default) for name, param in spec.items() if param.default is not None}
    if "time_range" in spec:
        params["time_range"] = requested
    return params


async def section_or_error(service: AnalyticsService, area: str, params: dict[str, Any],
                           timeout: float) -> dict[str, Any]:
    """The section as its endpoint serves it, or the error envelope its endpoint would answer."""
    try:
        section = await asyncio.wait_for(service.areas[area].section(params), timeout)
    except SourceDisabled as error:
        return envelope(error.code, str(error))
    except SourceError as error:
        return envelope(error.code, f"source {error} (data is unavailable until it recovers)")
    except asyncio.TimeoutError:
        # The memo shields the load: it completes in the background for the next request.
        return envelope("upstream_timeout",
                        f"the sources did not answer within {timeout:g} s; the refresh continues, retry shortly")
    except Exception:  # noqa: BLE001 - a bug in one area must not take the other sections down
        log.exception("unhandled error computing the %s section of the dashboard", area)
        return envelope("internal_error", "internal error; see the service log")
    return section.to_json(service)
