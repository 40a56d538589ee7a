"""``GET /api/v1/openapi.json``: OpenAPI 3.1, generated from what this process serves.

- Paths and methods are read from the application's router, so no endpoint can be missing or
  extra; a route that neither an area nor ``OPERATIONS`` describes fails the build, which
  ``tests/test_openapi.py`` catches.
- Query parameters (names, enums, defaults, which ones are optional) come from the same ``Param``
  specs the handlers parse with; path parameter enums from the configuration (an area's
  members, such as the funnel names) and the export formats.
- Section responses are the schema of the area's typed result (:func:`exporter.results.json_schema`)
  plus the header every section carries, whose ``time_range`` follows the route's parameters and
  whose ``sources`` are the area's sources in this configuration. The dashboard's keys are the
  areas' sections, an area with members as a mapping of them.
- Errors are the envelope: 400 wherever a handler parses the query string (unknown, repeated or
  invalid parameters), 401 on ``/api/v1/*`` when an API token is configured, 404 for an unknown
  funnel, export format or report, 405 for another method on a documented path, 501 for an
  export format whose optional extra is not installed, 503 where a section depends on upstreams.
- The stream is described as far as OpenAPI can: its handshake (101, or the errors answered
  before any upgrade); its messages are in the operation's description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from aiohttp import web

from exporter import __version__
from exporter.areas.base import Area, SectionHeader
from exporter.areas.funnels import FunnelCatalogue
from exporter.areas.params import Param
from exporter.health import SourceSummary
from exporter.results import json_schema
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

from . import schemas
from .dashboard import DASHBOARD_QUERY
from .export import CONTENT_TYPES, EXPORT_QUERY, FORMATS
from .jsonio import json_response
from .keys import SERVICE
from .middlewares import API_PREFIX
from .params import parse_query
from .reports import SEND_PATH
from .stream import PING_SECONDS, STREAM_PATH, STREAM_QUERY

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


def schema_name(area: Area) -> str:
    """``usage_trends`` -> ``UsageTrends``; a section of an area with members is one of them:
    ``funnels`` -> ``Funnel``."""
    name = area.name.removesuffix("s") if area.member else area.name
    return "".join(part.capitalize() for part in name.split("_"))


def _section_operation(area: Area) -> Operation:
    title = area.title.lower()
    errors = ("NotFound", "Unavailable") if area.member else ("Unavailable",)
    return Operation("Sections", f"{area.title} (one section)",
                     f"The {title} section: the same cached snapshot `/metrics` reads.",
                     area.query, {"200": {"description": f"the {title} section",
                                          "content": json_content(ref("schemas", schema_name(area)))}},
                     errors)


ERROR_STATUS = {"BadRequest": "400", "Unauthorized": "401", "NotFound": "404", "MethodNotAllowed": "405",
                "UpgradeRequired": "426", "TooSoon": "429", "NotInstalled": "501", "Unavailable": "503",
                "TooManyStreams": "503"}
ERROR_RESPONSES: dict[str, Schema] = {
    "BadRequest": {"description": "an unknown, repeated or invalid query parameter; the message names the valid "
                                  "values", "content": json_content(ref("schemas", "Error"))},
    "Unauthorized": {"description": "missing or wrong `Authorization: Bearer <API token>`",
                     "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                     "content": json_content(ref("schemas", "Error"))},
    "NotFound": {"description": "no such funnel (or other member), export format or report; the message names the "
                                "valid ones",
                 "content": json_content(ref("schemas", "Error"))},
    "MethodNotAllowed": {"description": "this path does not serve the request's method (`Allow` lists those it does)",
                         "headers": {"Allow": {"schema": {"type": "string"}}},
                         "content": json_content(ref("schemas", "Error"))},
    "TooSoon": {"description": "a forced refresh ran less than `server.min_forced_refresh_seconds` ago "
                               "(`refresh_too_soon`); `Retry-After` says when the next one is allowed",
                "headers": {"Retry-After": {"schema": {"type": "string"}}},
                "content": json_content(ref("schemas", "Error"))},
    "UpgradeRequired": {"description": "not a WebSocket handshake (`upgrade_required`)",
                        "headers": {"Upgrade": {"schema": {"type": "string"}}},
                        "content": json_content(ref("schemas", "Error"))},
    "NotInstalled": {"description": "the format needs the optional extra `reports`, not installed here "
                                    "(`extra_not_installed`; the message says how to install it)",
                     "content": json_content(ref("schemas", "Error"))},
    "TooManyStreams": {"description": "`server.max_stream_clients` streams are open (`too_many_streams`); "
                                      "`Retry-After` says when to try again",
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
        "`section,name,dimension,value,unit,time_range`, one row per numeric leaf. `xlsx`: a sheet per section, "
        "the numbers as typed cells under a units row. `pdf`: a readable report (headline figures, tables, charts). "
        "`xlsx` and `pdf` need the optional extra `reports` (501 without it). Every format comes with "
        '`Content-Disposition: attachment; filename="analytics-dashboard-<time_range>-<YYYYmmddTHHMMSSZ>.<format>"`.',
        EXPORT_QUERY, {"200": {
            "description": "the export", "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
            "content": {CONTENT_TYPES["json"]: {"schema": ref("schemas", "Dashboard")},
                        CONTENT_TYPES["csv"]: {"schema": {"type": "string"}},
                        **{CONTENT_TYPES[form]: {"schema": {"type": "string", "contentMediaType": CONTENT_TYPES[form]}}
                           for form in ("xlsx", "pdf")}}}},
        ("NotFound", "NotInstalled")),
    ("GET", STREAM_PATH): Operation(
        "Dashboard", "Live updates of sections (WebSocket)",
        "Upgrades to a WebSocket. For each subscribed section the server sends `{\"type\": \"section\", "
        "\"section\": <dashboard key>, \"time_range\": <the requested one>, \"data\": <exactly what the section's "
        "endpoint serves, or its error envelope>}` at once and again whenever its snapshot changes (`funnels`: every "
        f"configured funnel by name, as in the dashboard), and `{{\"type\": \"ping\"}}` every {PING_SECONDS:g} s. "
        "Clients send nothing. A client that stops reading is closed with 1008; at shutdown every stream is closed "
        "with 1001. At most `server.max_stream_clients` streams at once.", STREAM_QUERY,
        {"101": {"description": "the WebSocket"}}, ("UpgradeRequired", "TooManyStreams")),
    ("POST", SEND_PATH): Operation(
        "Operations", "Send a scheduled report now",
        "Composes the report (the dashboard for its time range, the summary and the configured formats) and sends "
        "it to its recipients in the background, retried with back-off; the answer does not wait for the mail "
        "server. The outcome is in the log and in `analytics_report_last_success_timestamp_seconds{report}`.", {},
        {"202": {"description": "the send has started (or one asked for earlier is still under way)",
                 "content": json_content(ref("schemas", "ReportSending"))}},
        ("NotFound",)),
    ("GET", "/api/v1/openapi.json"): Operation(
        "Operations", "This document", "OpenAPI 3.1, generated from the routes this process serves.", {},
        {"200": {"description": "the OpenAPI document", "content": json_content({"type": "object"})}}),
}



async def openapi(request: web.Request) -> web.Response:
    parse_query(request, {})
    return json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> Schema:
    """The OpenAPI 3.1 document of ``app`` as configured."""
    service = app[SERVICE]
    secured = service.config.server.api_token is not None
    routes = registered_routes(app)
    undocumented = [f"{method} {path}" for method, path in routes if _operation(service, method, path) is None]
    if undocumented:
        raise LookupError(f"routes without an OpenAPI description (api/openapi.py OPERATIONS): {undocumented}")
    paths: dict[str, Schema] = {}
    for method, path in routes:
        paths.setdefault(path, {})[method.lower()] = _operation_object(
            method, path, _operation(service, method, path), service, secured and path.startswith(API_PREFIX))
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


def _operation(service: AnalyticsService, method: str, path: str) -> Operation | None:
    area = next((area for area in service.areas.values() if area.path == path), None)
    if method == "GET" and area is not None:
        return _section_operation(area)
    return OPERATIONS.get((method, path))


def _operation_object(method: str, path: str, operation: Operation, service: AnalyticsService,
                      secured: bool) -> Schema:
    parameters = [_path_parameter(name, service) for name in re.findall(r"{(\w+)}", path)]
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
    schema: Schema = {"type": "string"} | ({"enum": list(param.choices)} if param.choices is not None else {})
    schema |= param.schema
    if param.default is not None:
        schema.setdefault("default", param.default)  # a schema typing the value (an integer) states it typed
    if param.repeatable:
        schema = {"type": "array", "items": schema} | ({"maxItems": param.most} if param.most is not None else {})
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if param.repeatable:
        parameter |= {"style": "form", "explode": True}
    if param.description:
        parameter["description"] = param.description
    return parameter


def _path_parameter(name: str, service: AnalyticsService) -> Schema:
    if name == "format":
        values, description = list(FORMATS), "the export format"
    elif name == "name":
        values, description = [report.name for report in service.config.reports], "a configured report"
    else:
        area = next(area for area in service.areas.values() if area.member == name)
        values, description = list(area.members()), f"a configured {name.removesuffix('_name')}"
    if not values:  # an empty enum would be a parameter no request can satisfy
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                "description": f"{description}; none is configured, so every value is answered 404"}
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "enum": values}}


def _component_schemas(service: AnalyticsService) -> dict[str, Schema]:
    sections = {schema_name(area): _section_schema(area) for area in service.areas.values()}
    return sections | {
        "Dashboard": _dashboard_schema(service),
        "Error": schemas.ERROR,
        "SourceSummary": json_schema(SourceSummary),
        "FunnelCatalogue": json_schema(FunnelCatalogue),
        "RefreshOutcome": schemas.REFRESH_OUTCOME,
        "ReportSending": schemas.REPORT_SENDING,
        "Health": schemas.HEALTH,
    }


def _section_schema(area: Area) -> Schema:
    """The area's result with the header of its section: ``time_range`` as its parameters allow,
    ``sources`` the area's in this configuration."""
    body, header = json_schema(area.result), json_schema(SectionHeader)
    properties = dict(header["properties"])
    properties["time_range"] = ({"type": "string", "enum": TimeRange.names()} if "time_range" in area.query
                                else {"type": "null"}) | {"description": properties["time_range"]["description"]}
    properties["sources"] = schemas.record({name: ref("schemas", "SourceSummary") for name in area.sources},
                                           description="the sources this section used")
    return body | {"properties": properties | body["properties"], "required": header["required"] + body["required"]}


def _dashboard_schema(service: AnalyticsService) -> Schema:
    def served_or_error(area: Area) -> Schema:
        return {"oneOf": [ref("schemas", schema_name(area)), ref("schemas", "Error")]}

    def section(area: Area) -> Schema:
        if area.member is None:
            return served_or_error(area)
        return schemas.record({name: served_or_error(area) for name in area.members()},
                              description=f"every configured {area.member.removesuffix('_name')} by name, in "
                                          "configuration order")

    return schemas.record({
        "time_range": schemas.enum(TimeRange.names()),
        "generated_at": schemas.described(schemas.TIMESTAMP, "when the dashboard was assembled"),
        "sources": schemas.record({name: ref("schemas", "SourceSummary") for name in service.health.sources}),
        **{area.name: section(area) for area in service.areas.values()},
    })
