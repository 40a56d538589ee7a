"""Builds the aiohttp application around one :class:`AnalyticsService`."""

from __future__ import annotations

from aiohttp import web

from exporter.rendering import MetricsRenderer
from exporter.service import AnalyticsService

from .keys import RENDERER, RESPONSES, SERVICE
from .middlewares import auth_middleware, cors_middleware, error_middleware
from .responses import Responses
from .routes import add_routes

MAX_REQUEST_BODY_BYTES = 64 * 1024  # no endpoint takes a body; refuse large ones early


def create_app(service: AnalyticsService) -> web.Application:
    server = service.config.server
    # CORS and auth only when configured: every middleware is a layer on every request (about a
    # tenth of a cached response's cost), and without them there is nothing to do.
    middlewares = [error_middleware()]
    if server.cors_allowed_origins:
        middlewares.insert(0, cors_middleware(server.cors_allowed_origins))
    if server.api_token:
        middlewares.append(auth_middleware(server.api_token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_REQUEST_BODY_BYTES)
    app[SERVICE] = service
    app[RENDERER] = MetricsRenderer(service)
    app[RESPONSES] = Responses(service.health, service.clock)
    add_routes(app)

    async def close_service(_: web.Application) -> None:
        await service.close()

    app.on_cleanup.append(close_service)
    return app
