"""``GET /api/v1/openapi.json``: valid OpenAPI 3.1, exactly the routes served, and real responses
(from the demo upstreams, errors included) valid against the documented schemas."""

from __future__ import annotations

import itertools
import json
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api.app import create_app
from api.openapi import openapi_document, registered_routes
from exporter.service import AnalyticsService
from tests.conftest import service_config

DOCUMENT_URI = "urn:analytics-dashboard:openapi"
TIME_RANGES = ["1h", "6h", "24h", "7d", "30d", "90d"]
# docs/api.md#endpoints: every endpoint, and the default time_range of those that take one.
CONTRACT_ROUTES = {
    ("GET", "/health"): None, ("GET", "/metrics"): None, ("GET", "/api/v1/dashboard"): "7d",
    ("GET", "/api/v1/usage-trends"): "7d", ("GET", "/api/v1/feature-adoption"): "30d",
    ("GET", "/api/v1/experiment-results"): None, ("GET", "/api/v1/user-segments"): "30d",
    ("GET", "/api/v1/funnel/{funnel_name}"): "30d", ("GET", "/api/v1/funnels"): None,
    ("GET", "/api/v1/feedback"): "30d", ("POST", "/api/v1/metrics/refresh"): None,
    ("GET", "/api/v1/export/{format}"): "30d", ("GET", "/api/v1/openapi.json"): None,
    ("GET", "/api/v1/retention"): "90d", ("GET", "/api/v1/lifecycle"): "30d",
    ("GET", "/api/v1/stream"): "7d", ("POST", "/api/v1/reports/{name}/send"): None,
    ("GET", "/api/v1/forecast"): None, ("GET", "/api/v1/anomalies"): "30d",
}
# What a plain request (no WebSocket handshake) gets from the stream, and a report's send.
EXPECTED_STATUS = {"/api/v1/stream": 426, "/api/v1/reports/{name}/send": 202}
# A report to send; its mail server is closed, so the send (in the background) fails and is logged.
REPORTS = {"reports": [{"name": "weekly", "schedule": "weekly MON 08:00", "recipients": ["team@example.com"]}],
           "smtp.host": "127.0.0.1", "smtp.port": 9, "smtp.starttls": False, "smtp.sender": "a@example.com",
           "smtp.max_attempts": 1}
API_TOKEN = "test-api-token-0123456789"


async def fetch_document(client, headers=None) -> dict:
    response = await client.get("/api/v1/openapi.json", headers=headers)
    assert response.status == 200
    return await response.json()


def documented_routes(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def resolve(document: dict, node: dict) -> tuple[dict, str | None]:
    """A response object, following its ``$ref`` (to components.responses) if it has one."""
    if "$ref" not in node:
        return node, None
    location = node["$ref"].removeprefix("#/").split("/")
    target = document
    for part in location:
        target = target[part]
    return target, "/".join(location)


def response_errors(document: dict, method: str, template: str, status: int, content_type: str, body) -> list[str]:
    """Why ``body`` does not match what the document says ``method template`` answers with ``status``."""
    operation = document["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template} answers {status}, which is not documented"
    response, location = resolve(document, operation["responses"][str(status)])
    assert content_type in response["content"], f"{method} {template} {status}: {content_type} not documented"
    base = location or pointer("paths", template, method.lower(), "responses", str(status))
    schema_at = f"{DOCUMENT_URI}#/{base}/{pointer('content', content_type, 'schema')}"
    registry = Registry().with_resource(DOCUMENT_URI, Resource(contents=document, specification=DRAFT202012))
    validator = Draft202012Validator({"$ref": schema_at}, registry=registry)
    return [f"{list(error.absolute_path)}: {error.message[:200]}" for error in validator.iter_errors(body)]


async def check(client, document: dict, method: str, template: str, url: str, expected_status: int | None = None,
                headers=None) -> object:
    """Request ``url``; its status, media type and body must be documented for ``method template``."""
    response = await client.request(method, url, headers=headers)
    if expected_status is not None:
        assert response.status == expected_status, url
    raw = await response.read()
    if response.content_type == "application/json":
        body = json.loads(raw)
    else:  # text, or a binary file (xlsx, pdf), whose schema says no more than "a string"
        body = raw.decode() if response.content_type.startswith("text/") else raw.decode("latin-1")
    assert not response_errors(document, method, template, response.status, response.content_type, body), url
    return body


def concrete_urls(document: dict, template: str, method: str) -> list[str]:
    """``template`` with every documented path-parameter value, without a query and with each other
    value of its enumerated query parameters (one at a time, to keep the request count small)."""
    parameters = document["paths"][template][method.lower()].get("parameters", [])
    in_path = [p for p in parameters if p["in"] == "path"]
    paths = [template.format(**dict(zip([p["name"] for p in in_path], values)))
             for values in itertools.product(*(p["schema"]["enum"] for p in in_path))]
    queries = [""] + [f"?{p['name']}={quote(value)}" for p in parameters if p["in"] == "query"
                      for value in p["schema"].get("enum", [])[:3] if value != p["schema"].get("default")]
    return [path + query for path in paths for query in queries]


# Ranges shorter than one interval of the section's default (retention: a week; lifecycle: a day): 400.
TOO_SHORT = {"/api/v1/retention": ("1h", "6h", "24h"), "/api/v1/lifecycle": ("1h", "6h")}


def too_short(url: str) -> bool:
    path, _, query = url.partition("?")
    return any(f"time_range={short}" == query for short in TOO_SHORT.get(path, ()))


async def test_the_document_is_valid_openapi_3_1_and_lists_exactly_the_served_routes(make_demo_client):
    client, _ = await make_demo_client()
    document = await fetch_document(client)
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)
    assert documented_routes(document) == set(registered_routes(client.app)) == set(CONTRACT_ROUTES)
    # The router's own view, without the helper above: HEAD and OPTIONS are aiohttp's additions.
    served = {(route.method, route.resource.canonical) for route in client.app.router.routes()}
    assert {route for route in served if route[0] not in ("HEAD", "OPTIONS")} == set(CONTRACT_ROUTES)


def expected_schema(param) -> dict:
    one = ({"type": "string"} | ({"enum": list(param.choices)} if param.choices else {})
           | ({"default": param.default} if param.default else {}) | param.schema)
    if not param.repeatable:
        return one
    return {"type": "array", "items": one} | ({"maxItems": param.most} if param.most is not None else {})


async def test_parameters_are_those_the_handlers_parse(make_demo_client):
    client, service = await make_demo_client()
    document = await fetch_document(client)
    for (method, template), default_range in CONTRACT_ROUTES.items():
        parameters = {p["name"]: p for p in document["paths"][template][method.lower()].get("parameters", [])}
        if default_range:
            assert parameters["time_range"]["schema"] == {"type": "string", "enum": TIME_RANGES,
                                                          "default": default_range}, template
        else:
            assert "time_range" not in parameters, template
    for area in service.areas.values():  # the areas' own declarations
        parameters = {p["name"]: p["schema"] for p in document["paths"][area.path]["get"].get("parameters", [])
                      if p["in"] == "query"}
        assert parameters == {name: expected_schema(param) for name, param in area.query.items()}
    experiments = document["paths"]["/api/v1/experiment-results"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"], p["schema"]) for p in experiments] == [
        ("status", "query", False, {"type": "string", "enum": ["draft", "running", "stopped"]})]
    funnel = document["paths"]["/api/v1/funnel/{funnel_name}"]["get"]["parameters"][0]
    assert funnel["in"] == "path" and funnel["schema"]["enum"] == [f.name for f in service.config.funnels] \
        == ["onboarding", "deployment", "service_creation"]
    export = document["paths"]["/api/v1/export/{format}"]["get"]["parameters"][0]
    assert export["in"] == "path" and export["schema"]["enum"] == ["json", "csv", "xlsx", "pdf"]


@pytest.mark.slow  # every documented route, the whole PDF and xlsx reports included
async def test_every_real_response_validates_against_its_documented_schema(make_demo_client, clock):
    client, service = await make_demo_client(**REPORTS)
    document = await fetch_document(client)
    for method, template in sorted(documented_routes(document)):
        urls = concrete_urls(document, template, method)
        for url in urls:
            expected = 400 if too_short(url) else EXPECTED_STATUS.get(template, 200)
            await check(client, document, method, template, url, expected_status=expected)
        if template.startswith("/api/v1/"):  # every API handler parses its query string
            await check(client, document, method, template, f"{urls[0]}?bogus=1", 400)
        # Another method on the path: answered with the envelope the operation documents.
        response = await client.request("DELETE", urls[0])
        assert response.status == 405
        assert not response_errors(document, method, template, 405, "application/json", await response.json())
    await check(client, document, "GET", "/api/v1/funnel/{funnel_name}", "/api/v1/funnel/nope", 404)
    await check(client, document, "GET", "/api/v1/export/{format}", "/api/v1/export/xml", 404)
    await check(client, document, "POST", "/api/v1/reports/{name}/send", "/api/v1/reports/monthly/send", 404)

    # Past the TTL the previous snapshot is served marked stale while it is refreshed.
    clock.advance(service.config.cache.ttl_seconds + 1)
    stale = await check(client, document, "GET", "/api/v1/usage-trends", "/api/v1/usage-trends", 200)
    assert stale["stale"] is True


async def test_a_disabled_source_is_a_documented_503_and_an_error_inside_the_dashboard(make_demo_client):
    client, _ = await make_demo_client(**{"sources.feedback.enabled": False})
    document = await fetch_document(client)
    error = await check(client, document, "GET", "/api/v1/feedback", "/api/v1/feedback", 503)
    assert error["error"]["code"] == "source_disabled"
    dashboard = await check(client, document, "GET", "/api/v1/dashboard", "/api/v1/dashboard", 200)
    assert dashboard["feedback"] == error
    assert set(document["components"]["schemas"]["Feedback"]["properties"]["sources"]["properties"]) == {"feedback"}


async def test_with_an_api_token_the_document_says_so_and_a_missing_token_is_a_documented_401(make_demo_client):
    client, _ = await make_demo_client(**{"server.api_token": API_TOKEN})
    document = await fetch_document(client, headers={"Authorization": f"Bearer {API_TOKEN}"})
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["components"]["securitySchemes"]["apiToken"] == {
        "type": "http", "scheme": "bearer", "description": "the configured API_TOKEN"}
    for method, template in documented_routes(document):
        operation = document["paths"][template][method.lower()]
        guarded = template.startswith("/api/v1/")
        assert ("401" in operation["responses"]) == guarded and ("security" in operation) == guarded, template
    await check(client, document, "GET", "/api/v1/usage-trends", "/api/v1/usage-trends", 401)
    await check(client, document, "GET", "/health", "/health", 200)
    unsecured, _ = await make_demo_client()
    plain = await fetch_document(unsecured)
    assert "securitySchemes" not in plain["components"]
    assert not [t for t, item in plain["paths"].items() for op in item.values() if "401" in op["responses"]]


async def test_the_schemas_reject_bodies_that_differ_from_the_contract(make_demo_client):
    # The check above would pass vacuously with permissive schemas: these bodies must fail.
    client, _ = await make_demo_client()
    document = await fetch_document(client)
    usage = await (await client.get("/api/v1/usage-trends")).json()
    experiments = await (await client.get("/api/v1/experiment-results")).json()
    wrong = [
        ("/api/v1/usage-trends", usage | {"undocumented": 1}),
        ("/api/v1/usage-trends", usage | {"active_users": None}),  # a count is never null
        ("/api/v1/usage-trends", usage | {"generated_at": "2024-01-01T00:00:00+00:00"}),  # not Z
        ("/api/v1/usage-trends", usage | {"time_range": "2w"}),
        ("/api/v1/usage-trends", {key: value for key, value in usage.items() if key != "sources"}),
        ("/api/v1/experiment-results", experiments | {"time_range": "7d"}),  # takes no range
        ("/api/v1/experiment-results", {**experiments, "experiments": [
            experiments["experiments"][0] | {"recommendation": "maybe"}]}),
    ]
    for path, body in wrong:
        assert response_errors(document, "GET", path, 200, "application/json", body), body.keys()
    assert not response_errors(document, "GET", "/api/v1/usage-trends", 200, "application/json", usage)


async def undescribed(request):
    raise AssertionError("never called")


def test_a_route_without_a_description_fails_the_build_naming_it():
    app = create_app(AnalyticsService(service_config(None)))
    app.router.add_get("/api/v1/undescribed", undescribed)
    with pytest.raises(LookupError, match="GET /api/v1/undescribed"):
        openapi_document(app)
