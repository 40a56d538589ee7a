"""JSON responses that never contain NaN or Infinity."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def dumps(data: Any) -> str:
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # Analysis code returns None for undefined numbers; reaching this is a bug, but the
        # caller still gets valid JSON with null where the number could not be defined.
        log.error("non-finite number in a JSON response; replaced by null")
        return json.dumps(_finite(data), allow_nan=False, separators=(",", ":"))


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def json_bytes_response(body: bytes) -> web.Response:
    """A 200 whose body is JSON already encoded as UTF-8 (see api.section_json)."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data
