"""Serving a section: its snapshot within the request deadline, or the error its endpoint answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

from aiohttp import web

from exporter.areas.base import Area, Snapshot
from exporter.areas.params import InvalidParameter
from exporter.errors import SourceError
from exporter.service import AnalyticsService

from .errors import INTERNAL_ERROR_MESSAGE, ApiError, deadline_message, envelope, source_error_message
from .jsonio import json_bytes_response
from .keys import RESPONSES, SERVICE

log = logging.getLogger(__name__)


def section_key(area: Area, params: dict[str, Any]) -> Hashable:
    """What a section's encoded response is kept under (one per area and parameter set)."""
    return ("section", area.name, tuple(sorted(params.items())))


async def section_response(app: web.Application, area: Area, params: dict[str, Any]) -> web.Response:
    service = app[SERVICE]
    try:
        area.check(params)
    except InvalidParameter as error:
        raise ApiError(400, f"invalid_{error.name}", str(error)) from None
    # A fresh snapshot needs no waiting, so no deadline task either: that is most requests.
    snapshot = area.fresh(params) or await within_deadline(service, area.section(params))
    return json_bytes_response(app[RESPONSES].section(section_key(area, params), snapshot))


async def within_deadline(service: AnalyticsService, awaitable: Any) -> Any:
    timeout = service.config.server.request_timeout_seconds
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise ApiError(503, "upstream_timeout", deadline_message(timeout)) from None


async def section_or_error(area: Area, params: dict[str, Any], timeout: float) -> Snapshot | dict[str, Any]:
    """The snapshot its endpoint serves, or the error envelope its endpoint would answer."""
    try:
        area.check(params)
        return await asyncio.wait_for(area.section(params), timeout)
    except InvalidParameter as error:
        return envelope(f"invalid_{error.name}", str(error))
    except SourceError as error:
        return envelope(error.code, source_error_message(error))
    except asyncio.TimeoutError:
        # The memo shields the load: it completes in the background for the next request.
        return envelope("upstream_timeout", deadline_message(timeout))
    except Exception:  # noqa: BLE001 - a bug in one area must not take the other sections down
        log.exception("unhandled error computing the %s section", area.name)
        return envelope("internal_error", INTERNAL_ERROR_MESSAGE)
