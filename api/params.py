"""Query-string parsing: unknown, repeated or invalid parameters are 400s naming the valid values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from exporter.areas.params import Param

from .errors import ApiError


def parse_query(request: web.Request, spec: Mapping[str, Param]) -> dict[str, Any]:
    # Most requests have no query string: skip building the parsed multidict for them.
    query = request.rel_url.query if request.query_string else _NO_QUERY
    if query is not _NO_QUERY:
        _require_utf8(request.rel_url.raw_query_string)
    unknown = sorted(set(query) - set(spec))
    if unknown:
        valid = ", ".join(spec) or "none"
        raise ApiError(400, "unknown_parameter", f"unknown query parameter '{_clip(unknown[0])}'; valid: {valid}")
    values: dict[str, Any] = {}
    for name, param in spec.items():
        given = query.getall(name, [])
        if param.repeatable:
            if given:  # absent when not given: a parameter set names only what was asked
                values[name] = tuple(_value(name, param, raw) for raw in given)
            continue
        if len(given) > 1:
            raise ApiError(400, "repeated_parameter", f"'{name}' is given {len(given)} times; give it once")
        raw = given[0] if given else param.default
        if raw is not None:
            values[name] = _value(name, param, raw)
    return values


def _value(name: str, param: Param, raw: str) -> Any:
    if param.choices is not None and raw not in param.choices:
        valid = ", ".join(param.choices)
        raise ApiError(400, f"invalid_{name}", f"'{_clip(raw)}' is not a valid {name}; valid: {valid}")
    try:
        return param.convert(raw)
    except ValueError as error:
        raise ApiError(400, f"invalid_{name}", str(error)) from None


_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


def _require_utf8(raw_query: str) -> None:
    """Refuse percent-escapes that are not UTF-8 (a lone surrogate such as ``%ED%A0%80``, ``%FF``).

    The URL parser would read them as U+FFFD: a value nobody sent, which would match nothing
    rather than say what is wrong.
    """
    try:
        unquote_to_bytes(raw_query.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding",
                       "the query string holds percent-escapes that are not UTF-8; encode values as UTF-8") from None


def _clip(text: str, limit: int = 64) -> str:
    """Echo at most ``limit`` characters of user input back."""
    return text if len(text) <= limit else text[:limit] + "..."
