"""The endpoints. A section's endpoint is generic: its area's declaration, its parameters, its snapshot."""

from __future__ import annotations

import math

from aiohttp import web

from exporter import __version__
from exporter.areas.base import Area
from exporter.results import to_json

from .dashboard import dashboard
from .errors import ApiError
from .export import export
from .jsonio import json_response
from .keys import RENDERER, SERVICE
from .openapi import openapi
from .params import parse_query
from .reports import SEND_PATH, send_report
from .sections import section_response
from .stream import STREAM_PATH, stream

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
SCRAPE_MARGIN_SECONDS = 0.5  # leave time to render and send before Prometheus gives up


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    sources = {name: to_json(service.health.summary(name)) | service.source_details(name)
               for name in service.health.sources}
    return json_response({"status": service.health.overall_status(), "service": "analytics-dashboard",
                          "version": __version__, "sources": sources})


async def metrics(request: web.Request) -> web.Response:
    renderer, accept = request.app[RENDERER], request.headers.get("Accept")
    rendered = renderer.reusable(accept)  # between refreshes: the last response, as is
    if rendered is None:
        service = request.app[SERVICE]
        timeout = _scrape_timeout(request, service.config.metrics.default_scrape_timeout_seconds)
        await service.refresh_metrics(timeout - SCRAPE_MARGIN_SECONDS)
        rendered = renderer.render(accept)
    body, content_type = rendered
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type  # includes version and charset parameters
    return response


def section_handler(area: Area):
    """The endpoint of ``area``'s section; for an area with members, one section per member (an
    unknown member is a 404 naming the configured ones)."""
    async def handler(request: web.Request) -> web.Response:
        params = {}
        if area.member is not None:
            name = request.match_info[area.member]
            if name not in area.members():
                noun = area.member.removesuffix("_name")
                configured = ", ".join(area.members()) or "none"
                raise ApiError(404, f"unknown_{noun}", f"no {noun} named {name[:64]!r}; configured {noun}s: "
                                                       f"{configured}")
            params[area.member] = name
        return await section_response(request.app, area, params | parse_query(request, area.query))

    return handler


async def funnels(request: web.Request) -> web.Response:
    parse_query(request, {})
    return json_response(to_json(request.app[SERVICE].areas["funnels"].catalogue()))


async def refresh(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    parse_query(request, {})
    wait = service.claim_forced_refresh()
    if wait > 0:
        raise ApiError(429, "refresh_too_soon",
                       f"a forced refresh ran less than {service.config.server.min_forced_refresh_seconds:g} s ago; "
                       f"retry in {math.ceil(wait)} s", headers={"Retry-After": str(math.ceil(wait))})
    outcome = await service.refresh_all(service.config.server.request_timeout_seconds)
    status = 202 if "pending" in outcome.values() else 200
    return json_response({"sources": outcome}, status=status)


def _scrape_timeout(request: web.Request, default: float) -> float:
    try:
        value = float(request.headers.get(SCRAPE_TIMEOUT_HEADER, default))
    except ValueError:
        return default
    return value if 0 < value < 3600 else default


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    for area in app[SERVICE].areas.values():
        app.router.add_get(area.path, section_handler(area))
    app.router.add_get("/api/v1/funnels", funnels)
    app.router.add_post("/api/v1/metrics/refresh", refresh)
    app.router.add_get("/api/v1/dashboard", dashboard)
    app.router.add_get("/api/v1/export/{format}", export)
    app.router.add_get(STREAM_PATH, stream)
    app.router.add_post(SEND_PATH, send_report)
    app.router.add_get("/api/v1/openapi.json", openapi)
