"""Builds the aiohttp application around one :class:`AnalyticsService`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from exporter.rendering import MetricsRenderer
from exporter.service import AnalyticsService

from .keys import RENDERER, RESPONSES, SERVICE, WORKER
from .middlewares import auth_middleware, cors_middleware, error_middleware
from .reports import REPORTS, ReportDesk
from .responses import Responses
from .routes import add_routes
from .schedule import SCHEDULER, ReportScheduler
from .stream import STREAMS, StreamHub
from .worker import Worker

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
    app[WORKER] = Worker()
    app[STREAMS] = StreamHub(service, app[RESPONSES])
    app[REPORTS] = ReportDesk(service, app[RESPONSES], app[WORKER])
    app[SCHEDULER] = ReportScheduler(app[REPORTS], service.clock)
    add_routes(app)
    app.cleanup_ctx.append(_background_tasks)

    async def close_streams(app: web.Application) -> None:
        await app[STREAMS].close_all()  # 1001: a WebSocket would otherwise hold the shutdown to its grace period

    async def close_service(_: web.Application) -> None:
        await service.close()

    app.on_shutdown.append(close_streams)
    app.on_cleanup.append(close_service)
    return app


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    """The streams' hub and the report schedule run from start-up to cleanup; the sends still
    under way then are ended too (cleanup runs this before closing the service)."""
    tasks = [asyncio.create_task(app[STREAMS].run()), asyncio.create_task(app[SCHEDULER].run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await app[REPORTS].close()
