"""The endpoints. Sections are generic: an area, its query parameters, the shared snapshot."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.service import AnalyticsService
from exporter.sources.experimentation import STATUSES as EXPERIMENT_STATUSES

from .errors import ApiError, deadline_message
from .jsonio import json_bytes_response, json_response
from .params import Param, parse_query, time_range
from .section_json import SectionJson

SERVICE = web.AppKey("service", AnalyticsService)
RENDERER = web.AppKey("renderer", object)
SECTION_JSON = web.AppKey("section_json", SectionJson)
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
SCRAPE_MARGIN_SECONDS = 0.5  # leave time to render and send before Prometheus gives up

# path -> (area name, query parameters)
SECTIONS: dict[str, tuple[str, dict[str, Param]]] = {
    "/api/v1/usage-trends": ("usage_trends", {"time_range": time_range("7d")}),
    "/api/v1/experiment-results": ("experiment_results", {"status": Param(EXPERIMENT_STATUSES, None)}),
    "/api/v1/feature-adoption": ("feature_adoption", {"time_range": time_range("30d")}),
    "/api/v1/feedback": ("feedback", {"time_range": time_range("30d")}),
    "/api/v1/user-segments": ("user_segments", {"time_range": time_range("30d")}),
}
FUNNEL_QUERY = {"time_range": time_range("30d")}


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    sources = {name: service.health.summary(name) | service.source_details(name) for name in service.health.sources}
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


def section_handler(area_name: str, spec: dict[str, Param]):
    async def handler(request: web.Request) -> web.Response:
        return await _section_response(request.app, area_name, parse_query(request, spec))

    return handler


async def funnel(request: web.Request) -> web.Response:
    """One configured funnel; the name is part of the path, so an unknown one is a 404."""
    service = request.app[SERVICE]
    name = request.match_info["funnel_name"]
    if service.config.funnel(name) is None:
        configured = ", ".join(f.name for f in service.config.funnels) or "none"
        raise ApiError(404, "unknown_funnel", f"no funnel named {name[:64]!r}; configured funnels: {configured}")
    return await _section_response(request.app, "funnels", {"funnel_name": name, **parse_query(request, FUNNEL_QUERY)})


async def funnels(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    parse_query(request, {})
    return json_response(service.areas["funnels"].catalogue())


async def _section_response(app: web.Application, area_name: str, params: dict[str, Any]) -> web.Response:
    service, encoder = app[SERVICE], app[SECTION_JSON]
    area = service.areas[area_name]
    # A fresh snapshot needs no waiting, so no deadline task either: that is most requests.
    section = area.fresh(params) or await _within_deadline(service, area.section(params))
    key = area.key(params)
    template = encoder.section(key, section)
    return json_bytes_response(encoder.response(encoder.section_key(key, section), template, service.clock()))


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


async def _within_deadline(service: AnalyticsService, awaitable: Any) -> Any:
    timeout = service.config.server.request_timeout_seconds
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise ApiError(503, "upstream_timeout", deadline_message(timeout)) from None


def _scrape_timeout(request: web.Request, default: float) -> float:
    try:
        value = float(request.headers.get(SCRAPE_TIMEOUT_HEADER, default))
    except ValueError:
        return default
    return value if 0 < value < 3600 else default


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    for path, (area, spec) in SECTIONS.items():
        app.router.add_get(path, section_handler(area, spec))
    app.router.add_get("/api/v1/funnel/{funnel_name}", funnel)
    app.router.add_get("/api/v1/funnels", funnels)
    app.router.add_post("/api/v1/metrics/refresh", refresh)
    _add_whole_api_routes(app)


def _add_whole_api_routes(app: web.Application) -> None:
    """The endpoints over every section (dashboard, export) and over every route (OpenAPI).

    Their modules are built on this one's tables (SECTIONS, FUNNEL_QUERY, SERVICE), so they are
    imported here, once this module is complete, rather than at the top (an import cycle).
    """
    from .dashboard import dashboard
    from .export import export
    from .openapi import openapi

    app.router.add_get("/api/v1/dashboard", dashboard)
    app.router.add_get("/api/v1/export/{format}", export)
    app.router.add_get("/api/v1/openapi.json", openapi)
