"""``GET /api/v1/openapi.json``: OpenAPI 3.1, generated from what this process serves.

- Paths and methods are read from the application's router, so no endpoint can be missing or
  extra; a route that ``OPERATIONS`` (or ``SECTIONS``) does not describe fails the build, which
  ``tests/test_openapi.py`` catches.
- Query parameters (names, enums, defaults, which ones are optional) come from the same ``Param``
  specs the handlers parse with; path parameter enums from the configuration (funnel names) and
  the export formats.
- Section responses are the area's body schema (``api.schemas``) plus the header every section
  carries, whose ``time_range`` follows the route's parameters and whose ``sources`` are the
  area's sources in this configuration. The dashboard's keys are the sections of the route table
  and the configured funnels.
- Errors are the envelope: 400 wherever a handler parses the query string (unknown, repeated or
  invalid parameters), 401 on ``/api/v1/*`` when an API token is configured, 404 for an unknown
  funnel or export format, 405 for another method on a documented path, 503 where a section
  depends on upstreams.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from aiohttp import web

from exporter import __version__
from exporter.config import Config
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

from . import schemas
from .dashboard import DASHBOARD_QUERY, FUNNELS
from .export import CONTENT_TYPES, EXPORT_QUERY, FORMATS
from .jsonio import json_response
from .middlewares import API_PREFIX
from .params import Param, parse_query
from .routes import FUNNEL_QUERY, SECTIONS, SERVICE

OPENAPI_VERSION = "3.1.0"
AUTO_METHODS = frozenset({"HEAD", "OPTIONS"})  # aiohttp adds HEAD to every GET; CORS answers OPTIONS
Schema = dict[str, Any]


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


@dataclass(frozen=True)
class Operation:
    """What the router cannot say about an endpoint."""

    tag: str  # Sections, Dashboard or Operations
    summary: str
    description: str
    query: Mapping[str, Param] | None  # the handler's spec; None: the query string is not read
    responses: Mapping[str, Schema]  # the successful ones
    errors: tuple[str, ...] = ()  # error responses besides 400/401/405 (ERROR_RESPONSES names)


def schema_name(area: str) -> str:
    """``usage_trends`` -> ``UsageTrends``; the funnels area's section is one ``Funnel``."""
    return "Funnel" if area == FUNNELS else "".join(part.capitalize() for part in area.split("_"))


def _section_operation(area: str, spec: Mapping[str, Param]) -> Operation:
    title = area.replace("_", " ")
    return Operation("Sections", f"{title.capitalize()} (one section)",
                     f"The {title} section: the same cached snapshot `/metrics` reads.",
                     spec, {"200": {"description": f"the {title} section",
                                    "content": json_content(ref("schemas", schema_name(area)))}},
                     ("Unavailable",))


ERROR_STATUS = {"BadRequest": "400", "Unauthorized": "401", "NotFound": "404", "MethodNotAllowed": "405",
                "TooSoon": "429", "Unavailable": "503"}
ERROR_RESPONSES: dict[str, Schema] = {
    "BadRequest": {"description": "an unknown, repeated or invalid query parameter; the message names the valid "
                                  "values", "content": json_content(ref("schemas", "Error"))},
    "Unauthorized": {"description": "missing or wrong `Authorization: Bearer <API token>`",
                     "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                     "content": json_content(ref("schemas", "Error"))},
    "NotFound": {"description": "no such funnel or export format; the message names the valid ones",
                 "content": json_content(ref("schemas", "Error"))},
    "MethodNotAllowed": {"description": "this path does not serve the request's method (`Allow` lists those it does)",
                         "headers": {"Allow": {"schema": {"type": "string"}}},
                         "content": json_content(ref("schemas", "Error"))},
    "TooSoon": {"description": "a forced refresh ran less than `server.min_forced_refresh_seconds` ago "
                               "(`refresh_too_soon`); `Retry-After` says when the next one is allowed",
                "headers": {"Retry-After": {"schema": {"type": "string"}}},
                "content": json_content(ref("schemas", "Error"))},
    "Unavailable": {"description": "a source the section needs is down (`upstream_error`, ...), disabled "
                                   "(`source_disabled`, naming the missing setting) or slower than the request "
                                   "deadline (`upstream_timeout`)",
                    "content": json_content(ref("schemas", "Error"))},
}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation(
        "Operations", "Service and source health",
        "Always 200 while the process serves; `degraded` when an enabled source is down.",
        None, {"200": {"description": "health", "content": json_content(ref("schemas", "Health"))}}),
    ("GET", "/metrics"): Operation(
        "Operations", "Prometheus metrics",
        "Prometheus text format, or OpenMetrics when the `Accept` header asks for it.",
        None, {"200": {"description": "the metrics", "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}}}}}),
    ("GET", "/api/v1/funnel/{funnel_name}"): Operation(
        "Sections", "One funnel", "A configured funnel's steps, conversion and timings.", FUNNEL_QUERY,
        {"200": {"description": "the funnel", "content": json_content(ref("schemas", schema_name(FUNNELS)))}},
        ("NotFound", "Unavailable")),
    ("GET", "/api/v1/funnels"): Operation(
        "Sections", "Configured funnels",
        "Each funnel with the event (and Plausible goal, if any) that marks each step.", {},
        {"200": {"description": "the catalogue", "content": json_content(ref("schemas", "FunnelCatalogue"))}}),
    ("POST", "/api/v1/metrics/refresh"): Operation(
        "Operations", "Refresh every published snapshot",
        "Forces a refresh of everything `/metrics` publishes and answers when it completes, or with 202 when it "
        "exceeds the request deadline (the refresh then continues in the background). At most one forced "
        "refresh per `server.min_forced_refresh_seconds`, so callers cannot spend the upstreams' request "
        "budgets (429 with `Retry-After` otherwise).", {},
        {"200": {"description": "every refresh completed", "content": json_content(ref("schemas", "RefreshOutcome"))},
         "202": {"description": "some refreshes are still running (`pending`)",
                 "content": json_content(ref("schemas", "RefreshOutcome"))}},
        ("TooSoon",)),
    ("GET", "/api/v1/dashboard"): Operation(
        "Dashboard", "Every section in one object",
        "Every section for the requested time range (experiment results take none), fetched concurrently, plus "
        "every source's summary. A section that cannot be served appears as the error envelope its own endpoint "
        "would answer; the dashboard itself answers 200. `funnels` maps each configured funnel's name to its "
        "section.", DASHBOARD_QUERY,
        {"200": {"description": "the dashboard", "content": json_content(ref("schemas", "Dashboard"))}}),
    ("GET", "/api/v1/export/{format}"): Operation(
        "Dashboard", "The dashboard as a download",
        "`json`: the dashboard object. `csv`: one tidy table with the header "
        "`section,name,dimension,value,unit,time_range`, one row per numeric leaf (see the README). Both come with "
        '`Content-Disposition: attachment; filename="analytics-dashboard-<time_range>-<YYYYmmddTHHMMSSZ>.<format>"`.',
        EXPORT_QUERY, {"200": {
            "description": "the export", "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
            "content": {CONTENT_TYPES["json"]: {"schema": ref("schemas", "Dashboard")},
                        CONTENT_TYPES["csv"]: {"schema": {"type": "string"}}}}},
        ("NotFound",)),
    ("GET", "/api/v1/openapi.json"): Operation(
        "Operations", "This document", "OpenAPI 3.1, generated from the routes this process serves.", {},
        {"200": {"description": "the OpenAPI document", "content": json_content({"type": "object"})}}),
}

PARAMETER_DESCRIPTIONS = {
    "time_range": "the window: sub-day ranges are rolling and bucketed by hour; day ranges are the N calendar "
                  "days ending today (site timezone), bucketed by day",
    "status": "only experiments with this status (default: all)",
}
PATH_PARAMETERS: dict[str, Callable[[Config], tuple[list[str], str]]] = {
    "funnel_name": lambda config: ([funnel.name for funnel in config.funnels], "a configured funnel"),
    "format": lambda _: (list(FORMATS), "the export format"),
}


async def openapi(request: web.Request) -> web.Response:
    parse_query(request, {})
    return json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> Schema:
    """The OpenAPI 3.1 document of ``app`` as configured."""
    service = app[SERVICE]
    secured = service.config.server.api_token is not None
    routes = registered_routes(app)
    undocumented = [f"{method} {path}" for method, path in routes if _operation(method, path) is None]
    if undocumented:
        raise LookupError(f"routes without an OpenAPI description (api/openapi.py OPERATIONS): {undocumented}")
    paths: dict[str, Schema] = {}
    for method, path in routes:
        paths.setdefault(path, {})[method.lower()] = _operation_object(
            method, path, _operation(method, path), service.config, secured and path.startswith(API_PREFIX))
    components: Schema = {"schemas": _component_schemas(service), "responses": ERROR_RESPONSES}
    if secured:
        components["securitySchemes"] = {"apiToken": {"type": "http", "scheme": "bearer",
                                                      "description": "the configured API_TOKEN"}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "analytics-dashboard", "version": __version__,
                 "description": "Platform usage analytics: a Prometheus exporter and a JSON API over the same "
                                "analysed snapshots. Rates are fractions 0..1 except bounce_rate (0..100); "
                                "durations are seconds; an undefined number is null, with a status code saying why."},
        "paths": dict(sorted(paths.items())),
        "components": components,
    }


def registered_routes(app: web.Application) -> list[tuple[str, str]]:
    """``(method, path template)`` of every route the app serves, without the automatic ones."""
    return sorted({(route.method, route.resource.canonical) for route in app.router.routes()
                   if route.method not in AUTO_METHODS and route.resource is not None})


def _operation(method: str, path: str) -> Operation | None:
    if method == "GET" and path in SECTIONS:
        return _section_operation(*SECTIONS[path])
    return OPERATIONS.get((method, path))


def _operation_object(method: str, path: str, operation: Operation, config: Config, secured: bool) -> Schema:
    parameters = [_path_parameter(name, config) for name in re.findall(r"{(\w+)}", path)]
    parameters += [_query_parameter(name, param) for name, param in (operation.query or {}).items()]
    errors = (("BadRequest",) if operation.query is not None else ()) + (("Unauthorized",) if secured else ()) \
        + operation.errors + ("MethodNotAllowed",)
    result: Schema = {
        "operationId": re.sub(r"\W+", "_", f"{method.lower()}{path}").strip("_"),
        "summary": operation.summary,
        "description": operation.description,
        "tags": [operation.tag],
        "responses": dict(operation.responses) | {ERROR_STATUS[name]: ref("responses", name) for name in errors},
    }
    if parameters:
        result["parameters"] = parameters
    if secured:
        result["security"] = [{"apiToken": []}]
    return result


def _query_parameter(name: str, param: Param) -> Schema:
    schema: Schema = {"type": "string", "enum": list(param.choices)}
    if param.default is not None:
        schema["default"] = param.default
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if name in PARAMETER_DESCRIPTIONS:
        parameter["description"] = PARAMETER_DESCRIPTIONS[name]
    return parameter


def _path_parameter(name: str, config: Config) -> Schema:
    values, description = PATH_PARAMETERS[name](config)
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "enum": values}}


def _component_schemas(service: AnalyticsService) -> dict[str, Schema]:
    sections = {area: spec for area, spec in SECTIONS.values()} | {FUNNELS: FUNNEL_QUERY}
    result = {schema_name(area): _section_schema(area, spec, service) for area, spec in sections.items()}
    return result | {
        "Dashboard": _dashboard_schema(service),
        "Error": schemas.ERROR,
        "SourceSummary": schemas.SOURCE_SUMMARY,
        "FunnelCatalogue": schemas.FUNNEL_CATALOGUE,
        "RefreshOutcome": schemas.REFRESH_OUTCOME,
        "Health": schemas.HEALTH,
    }


def _section_schema(area: str, spec: Mapping[str, Param], service: AnalyticsService) -> Schema:
    """The area's body with the header of a section served for ``spec``'s parameters."""
    body = schemas.SECTION_BODIES[area]
    header = {
        "time_range": schemas.enum(TimeRange.names()) if "time_range" in spec else {"type": "null"},
        "generated_at": schemas.described(schemas.TIMESTAMP, "when the snapshot was computed"),
        "sources": schemas.record({name: ref("schemas", "SourceSummary") for name in service.areas[area].sources},
                                  description="the sources this section used"),
        "stale": schemas.described({"const": True}, "present while a refresh of an expired snapshot is running"),
    }
    return body | {"properties": header | body["properties"],
                   "required": [name for name in header if name != "stale"] + body["required"]}


def _dashboard_schema(service: AnalyticsService) -> Schema:
    def served_or_error(area: str) -> Schema:
        return {"oneOf": [ref("schemas", schema_name(area)), ref("schemas", "Error")]}

    funnels = schemas.record({funnel.name: served_or_error(FUNNELS) for funnel in service.config.funnels},
                             description="every configured funnel by name, in configuration order")
    return schemas.record({
        "time_range": schemas.enum(TimeRange.names()),
        "generated_at": schemas.described(schemas.TIMESTAMP, "when the dashboard was assembled"),
        "sources": schemas.record({name: ref("schemas", "SourceSummary") for name in service.health.sources}),
        **{area: served_or_error(area) for area, _ in SECTIONS.values()},
        FUNNELS: funnels,
    })
