"""Cross-cutting HTTP behaviour: the error envelope, API token, CORS."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from exporter.errors import SourceError
from exporter.secrets import Secret

from .errors import INTERNAL_ERROR_MESSAGE, ApiError, envelope, source_error_message
from .jsonio import json_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_PREFIX = "/api/v1/"


def error_middleware() -> web.middleware:
    """Every failure becomes the envelope; nothing escapes as an HTML page or a traceback."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return json_response(envelope(error.code, error.message), status=error.status, headers=error.headers)
        except SourceError as error:
            return json_response(envelope(error.code, source_error_message(error)), status=503)
        except web.HTTPMethodNotAllowed as error:
            allowed = ", ".join(sorted(error.allowed_methods))
            message = f"{request.method} is not allowed here; allowed: {allowed}"
            return json_response(envelope("method_not_allowed", message), status=405, headers={"Allow": allowed})
        except web.HTTPNotFound:
            message = f"no endpoint at {request.path[:100]}; see /api/v1/openapi.json"
            return json_response(envelope("not_found", message), status=404)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return json_response(envelope(error.reason.lower().replace(" ", "_"), error.reason), status=error.status)
        except Exception:  # noqa: BLE001 - a bug must not take the process down or leak a traceback
            log.exception("unhandled error serving %s %s", request.method, request.path)
            return json_response(envelope("internal_error", INTERNAL_ERROR_MESSAGE), status=500)

    return middleware


def auth_middleware(token: Secret | None) -> web.middleware:
    """``/api/v1/*`` needs ``Authorization: Bearer <API_TOKEN>`` when a token is configured."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path.startswith(API_PREFIX) and request.method != "OPTIONS":
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.matches(given.strip()):
                raise ApiError(401, "unauthorized", "this endpoint needs 'Authorization: Bearer <API token>'",
                               headers={"WWW-Authenticate": 'Bearer realm="analytics-dashboard"'})
        return await handler(request)

    return middleware


def cors_middleware(allowed_origins: tuple[str, ...]) -> web.middleware:
    """CORS for the configured origins only (exact match), preflight included."""
    allowed = frozenset(allowed_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        is_preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if is_preflight:
            if origin not in allowed:  # answered here: this middleware is outside the error one
                return json_response(envelope("cors_origin_not_allowed",
                                              "this origin is not allowed (CORS_ALLOWED_ORIGINS)"), status=403)
            response: web.StreamResponse = web.Response(status=204)
            response.headers.update({
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
            })
        else:
            response = await handler(request)
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return middleware
