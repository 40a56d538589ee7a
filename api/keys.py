"""What the application holds: the service and what serves from it (aiohttp application keys)."""

from __future__ import annotations

from aiohttp import web

from exporter.rendering import MetricsRenderer
from exporter.service import AnalyticsService

from .responses import Responses
from .worker import Worker

SERVICE = web.AppKey("service", AnalyticsService)
RENDERER = web.AppKey("renderer", MetricsRenderer)
RESPONSES = web.AppKey("responses", Responses)
WORKER = web.AppKey("worker", Worker)
