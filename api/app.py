"""Builds the aiohttp application around one :class:`AnalyticsService`."""

from __future__ import annotations

from aiohttp import web

from exporter.rendering import MetricsRenderer
from exporter.service import AnalyticsService

from .middlewares import auth_middleware, cors_middleware, error_middleware
from .routes import RENDERER, SERVICE, add_routes

MAX_REQUEST_BODY_BYTES = 64 * 1024  # no endpoint takes a body; refuse large ones early


def create_app(service: AnalyticsService) -> web.Application:
    server = service.config.server
    app = web.Application(
        middlewares=[cors_middleware(server.cors_allowed_origins), error_middleware(), auth_middleware(server.api_token)],
        client_max_size=MAX_REQUEST_BODY_BYTES,
    )
    app[SERVICE] = service
    app[RENDERER] = MetricsRenderer(service)
    add_routes(app)

    async def close_service(_: web.Application) -> None:
        await service.close()

    app.on_cleanup.append(close_service)
    return app
