"""FastAPI behaviour shared by the simulated platform services (Experimentation, Feedback).

The real services are FastAPI apps; these helpers give the aiohttp simulations the same JSON
encoding, 422 validation bodies, plain-text 500s, naive UTC timestamps and an optional delay.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

# Starlette's JSONResponse: compact separators, UTF-8, and NaN/Infinity refused (ValueError).
_fastapi_dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False,
                                   separators=(",", ":"))


def fastapi_json_response(payload: Any, status: int = 200) -> web.Response:
    """A JSON response encoded the way FastAPI encodes it; raises ValueError on NaN/Infinity."""
    return web.json_response(payload, status=status, dumps=_fastapi_dumps)


def upstream_internal_error() -> web.Response:
    """Starlette's answer to an unhandled exception: plain text, not JSON."""
    return web.Response(status=500, text="Internal Server Error")


def naive_utc_iso(moment: datetime) -> str:
    """``moment`` as the platform services print it: UTC, ISO 8601, no offset.

    Like pydantic, ``isoformat`` drops the fraction when the microseconds are exactly zero.
    """
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat()


def simulated_clock(now: datetime, clock: Callable[[], float]) -> Callable[[], datetime]:
    """Wall time of the simulation: ``now`` when built, advancing with ``clock`` afterwards."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    started = clock()
    return lambda: now + timedelta(seconds=max(0.0, clock() - started))


class RequestValidationError(Exception):
    """Invalid query parameters; rendered as FastAPI's 422 ``{"detail": [errors]}``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid query parameter(s)")
        self.errors = errors


@dataclass(frozen=True)
class IntQuery:
    """An integer query parameter with FastAPI ``Query(default, ge=, le=)`` semantics."""

    name: str
    default: int
    ge: int | None = None
    le: int | None = None

    def check(self, raw: str) -> int | dict[str, Any]:
        """The parsed value, or pydantic's error entry when ``raw`` is not acceptable."""
        location = ["query", self.name]
        if not _INTEGER.fullmatch(raw):
            return {"type": "int_parsing", "loc": location, "input": raw,
                    "msg": "Input should be a valid integer, unable to parse string as an integer"}
        value = int(raw)
        if self.ge is not None and value < self.ge:
            return {"type": "greater_than_equal", "loc": location, "input": raw,
                    "msg": f"Input should be greater than or equal to {self.ge}",
                    "ctx": {"ge": self.ge}}
        if self.le is not None and value > self.le:
            return {"type": "less_than_equal", "loc": location, "input": raw,
                    "msg": f"Input should be less than or equal to {self.le}",
                    "ctx": {"le": self.le}}
        return value


_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def read_int_queries(request: web.Request, *params: IntQuery) -> dict[str, int]:
    """Parse integer query parameters, reporting every invalid one at once as FastAPI does."""
    values: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    for param in params:
        raws = request.query.getall(param.name, [])
        # FastAPI keeps the last of repeated scalar parameters.
        checked = param.check(raws[-1]) if raws else param.default
        if isinstance(checked, dict):
            errors.append(checked)
        else:
            values[param.name] = checked
    if errors:
        raise RequestValidationError(errors)
    return values


def optional_text_query(request: web.Request, name: str) -> str | None:
    """A string filter; the services test it for truthiness, so ``?status=`` means no filter."""
    raws = request.query.getall(name, [])
    return raws[-1] if raws and raws[-1] else None


def platform_service_middlewares(latency_s: float) -> list[Middleware]:
    """Middlewares giving an aiohttp app FastAPI's error bodies and a fixed response delay."""

    @web.middleware
    async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
        if latency_s > 0:
            await asyncio.sleep(latency_s)
        return await handler(request)

    @web.middleware
    async def fastapi_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestValidationError as exc:
            return fastapi_json_response({"detail": exc.errors}, status=422)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            # aiohttp's router answers in plain text; FastAPI answers {"detail": "Not Found"}.
            return fastapi_json_response({"detail": exc.reason}, status=exc.status)

    return [delay, fastapi_errors]
