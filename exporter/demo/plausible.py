"""A simulated Plausible Analytics server: Stats API v1 and v2 over a synthetic population.

It speaks the real contracts (docs/upstreams.md#plausible-analytics) so that the service's Plausible client runs the
same code in the demo and in tests as in production: Bearer auth with Plausible's error
messages, ``POST /api/v2/query`` and the four v1 ``GET`` endpoints, their validation errors
(always ``{"error": "..."}``), omitted empty buckets in v2 and zero-filled ones in v1. Every
number is computed from the population by :mod:`exporter.demo.plausible_query`; the server's
clock decides what "today" is and which events exist yet. The site's timezone is UTC.

Date ranges follow current Plausible (checked against plausible/analytics source):

* v2 ``"Nd"`` (``7d``, ``28d``, ``30d``, ``91d``) is the N **full days ending yesterday**, and
  ``"6mo"``/``"12mo"`` the N full months ending last month (``QueryPeriod``). Community Edition
  v2.1 still used the older reading (``7d`` = six days back to today, ``30d`` = thirty days
  back to today), so a client must not rely on either: it should send explicit ranges.
  ``"day"`` is today up to now, ``"24h"`` the 24 hours up to now, ``"month"``/``"year"`` the
  whole calendar month/year containing today, ``"all"`` the first event's day to today.
* v1 keeps the legacy reading: ``7d`` = today and the six days before, ``30d`` = today and the
  thirty days before (31 days), ``month`` the calendar month of ``date``, ``6mo``/``12mo``
  calendar months up to and including the current one. ``date`` moves "today".

Only what the population has can be queried: dimensions ``event:goal``, ``event:page``,
``event:name``, ``event:props:team``, ``visit:source`` and the time dimensions. Other real
dimensions and metrics, and ``include.comparisons``, give a 400 that says the simulation lacks
them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from exporter.demo.plausible_query import (
    DIMENSIONS,
    EVENT_DIMENSIONS,
    GOAL,
    METRICS,
    OPERATORS,
    PAGE,
    SESSION_METRICS,
    TIME_DIMENSIONS,
    AllOf,
    AnyOf,
    Condition,
    Filter,
    IndexedSite,
    Not,
    Query,
    Row,
    SessionDid,
    goal_filter_values,
    time_labels,
    wildcard_regex,
)
from exporter.demo.population import Population

log = logging.getLogger(__name__)

DAY = 86_400
MISSING_KEY = "Missing API key. Please use a valid Plausible API key as a Bearer Token."
INVALID_KEY_OR_SITE = (
    "Invalid API key or site ID. Please make sure you're using a valid API key with access to "
    "the site you've requested."
)
MISSING_SITE = "Missing site ID. Please provide the required site_id parameter with your request."

# Real Plausible names that the simulation has no data for.
_UNSIMULATED_METRICS = (
    "scroll_depth",
    "time_on_page",
    "exit_rate",
    "total_revenue",
    "average_revenue",
)
_UNSIMULATED_DIMENSION = re.compile(r"^(visit:[a-z_0-9]+|event:hostname|event:props:.+)$")
_V1_PROPERTY_KEYS = {
    "visit:source": "source",
    "event:page": "page",
    "event:goal": "goal",
    "event:name": "name",
    "event:props:team": "team",
}


class PlausibleError(Exception):
    """An error answer: HTTP ``status`` with body ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad_request(message: str) -> PlausibleError:
    return PlausibleError(400, message)


def _inspect(value: Any) -> str:
    """Render a value the way Plausible's messages quote it (JSON-ish)."""
    return json.dumps(value)


# ---------------------------------------------------------------------------------------------
# Date ranges (UTC site)


@dataclass(frozen=True)
class Span:
    """An inclusive range of epoch seconds."""

    first: int
    last: int

    @classmethod
    def of_days(cls, first: date, last: date) -> "Span":
        if last < first:
            raise _bad_request(f"Invalid date range: {last} is before {first}.")
        return cls(_midnight(first), _midnight(last) + DAY - 1)

    def iso(self) -> list[str]:
        return [_utc(self.first).isoformat(), _utc(self.last).isoformat()]

    def previous(self) -> "Span":
        """The period of the same length just before this one."""
        length = self.last - self.first + 1
        return Span(self.first - length, self.first - 1)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def _shift_months(day: date, months: int) -> date:
    """The first day of the month ``months`` away from ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _end_of_month(day: date) -> date:
    return _shift_months(day, 1) - timedelta(days=1)


_LAST_N = re.compile(r"^(\d+)(d|mo)$")


def resolve_v2_date_range(value: Any, now: int, stats_start: int) -> Span:
    """A v2 ``date_range`` as an inclusive UTC span, as of ``now``."""
    today = _utc(now).date()
    if value == "day":
        return Span(_midnight(today), now)
    if value == "24h":
        return Span(now - DAY, now)
    if value == "month":
        return Span.of_days(today.replace(day=1), _end_of_month(today))
    if value == "year":
        return Span.of_days(date(today.year, 1, 1), date(today.year, 12, 31))
    if value == "all":
        return Span.of_days(min(_utc(stats_start).date(), today), today)
    if isinstance(value, str) and (match := _LAST_N.match(value)):
        n, unit = int(match[1]), match[2]
        if unit == "d" and 0 < n <= 5_000:
            return Span.of_days(today - timedelta(days=n), today - timedelta(days=1))
        if unit == "mo" and 0 < n <= 100:
            this_month = _shift_months(today, 0)
            return Span.of_days(_shift_months(today, -n), this_month - timedelta(days=1))
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        span = _explicit_range(value[0], value[1])
        if span is not None:
            return span
    raise _bad_request(f"Invalid date_range {_inspect(value)}")


def _explicit_range(start: str, end: str) -> Span | None:
    """``["YYYY-MM-DD", "YYYY-MM-DD"]`` or two ISO 8601 datetimes carrying an offset."""
    try:
        return Span.of_days(date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:
        pass
    try:
        first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None
    if first.tzinfo is None or last.tzinfo is None or last < first:
        return None
    return Span(int(first.timestamp()), int(last.timestamp()))


V1_PERIODS = ("day", "7d", "30d", "month", "6mo", "12mo", "custom")


def resolve_v1_period(params: dict[str, str], now: int) -> tuple[str, Span]:
    """The v1 ``period`` (default ``30d``) and ``date`` parameters as ``(period, span)``."""
    period = params.get("period", "30d")
    if period not in V1_PERIODS:
        raise _bad_request(
            f"Error parsing `period` parameter: invalid period `{period}`. Please find accepted "
            "values in our docs: https://plausible.io/docs/stats-api#time-periods"
        )
    raw_date = params.get("date")
    if period == "custom":
        parts = (raw_date or "").split(",")
        if raw_date is None:
            raise _bad_request(
                "The `date` parameter is required when using a custom period. See "
                "https://plausible.io/docs/stats-api#time-periods"
            )
        try:
            first, last = (date.fromisoformat(part.strip()) for part in parts)
        except ValueError:
            raise _bad_request(
                "Invalid format for `date` parameter. When using a custom period, please include "
                "two ISO-8601 formatted dates joined by a comma. See "
                "https://plausible.io/docs/stats-api#time-periods"
            ) from None
        return period, Span.of_days(first, last)

    anchor = _utc(now).date()
    if raw_date is not None:
        try:
            anchor = date.fromisoformat(raw_date)
        except ValueError:
            raise _bad_request(
                f"Error parsing `date` parameter: invalid date `{raw_date}`. Please specify a "
                "valid date in ISO-8601 format."
            ) from None
    if period == "day":
        return period, Span.of_days(anchor, anchor)
    if period in ("7d", "30d"):
        back = 6 if period == "7d" else 30
        return period, Span.of_days(anchor - timedelta(days=back), anchor)
    if period == "month":
        return period, Span.of_days(anchor.replace(day=1), _end_of_month(anchor))
    months = 6 if period == "6mo" else 12
    return period, Span.of_days(_shift_months(anchor, 1 - months), _end_of_month(anchor))


def resolve_time_dimension(span: Span) -> str:
    """What v2's bare ``"time"`` dimension means for a range: months when it spans at least a
    calendar month, days when it spans a day or more, else hours."""
    first, last = _utc(span.first), _utc(span.last)
    months = (last.year - first.year) * 12 + last.month - first.month - (last.day < first.day)
    if months > 0:
        return "time:month"
    if span.last - span.first >= DAY:
        return "time:day"
    return "time:hour"


# ---------------------------------------------------------------------------------------------
# Validation shared by both generations


def _validate_metric_names(metrics: Sequence[str]) -> None:
    if len(set(metrics)) != len(metrics):
        raise _bad_request("Metrics cannot be queried multiple times.")
    for metric in metrics:
        if metric in _UNSIMULATED_METRICS:
            raise _bad_request(f"Metric `{metric}` is not supported by this simulated Plausible.")
        if metric not in METRICS:
            raise _bad_request(f"Unknown metric '{_inspect(metric)}'.")


def _check_dimension(dimension: str, *, allow_time: bool = True) -> None:
    if dimension in DIMENSIONS and (allow_time or dimension not in TIME_DIMENSIONS):
        return
    if _UNSIMULATED_DIMENSION.match(dimension):
        raise _bad_request(
            f"Dimension `{dimension}` is not supported by this simulated Plausible "
            f"(supported: {', '.join(DIMENSIONS)})."
        )
    raise _bad_request(f"Invalid dimension {_inspect(dimension)}.")


def _validate_goal_names(filters: Sequence[Filter], site: IndexedSite) -> None:
    """An ``is`` filter naming a goal the site does not have fails the whole query."""
    for name in goal_filter_values(filters):
        if name not in site.goal_names:
            raise _bad_request(
                f"The goal `{name}` is not configured for this site. Find out how to configure "
                "goals here: https://plausible.io/docs/stats-api#filtering-by-goals"
            )


def _filters_on(filters: Iterable[Filter], dimension: str) -> bool:
    """Whether any condition anywhere in the filters is on ``dimension``."""
    for item in filters:
        if isinstance(item, Condition):
            if item.dimension == dimension:
                return True
        elif isinstance(item, (AllOf, AnyOf)):
            if _filters_on(item.filters, dimension):
                return True
        elif _filters_on((item.filter,), dimension):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# v2


_V2_KEYS = (
    "site_id",
    "metrics",
    "date_range",
    "dimensions",
    "filters",
    "order_by",
    "include",
    "pagination",
)
_V2_INCLUDE = {"time_labels": False, "total_rows": False, "imports": False}


@dataclass(frozen=True)
class V2Request:
    """A validated v2 query: what to compute, how to present it, and the ``query`` echo."""

    query: Query
    order_by: list[tuple[str, str]]
    include: dict[str, bool]
    limit: int
    offset: int
    echo: dict[str, Any]


def parse_v2(body: dict[str, Any], site: IndexedSite, now: int) -> V2Request:
    """Validate a v2 query body (auth already checked) the way Plausible does."""
    for key in body:
        if key not in _V2_KEYS:
            raise _bad_request(f"#/{key}: Schema does not allow additional properties.")
    for key in ("metrics", "date_range"):
        if key not in body:
            raise _bad_request(f"#/{key}: Required property {key} was not present.")

    metrics = body["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _bad_request("#/metrics: Expected a non-empty list of metric names.")
    _validate_metric_names(metrics)

    span = resolve_v2_date_range(body["date_range"], now, site.stats_start)
    dimensions = _parse_v2_dimensions(body.get("dimensions", []), span)
    filters = _parse_v2_filters(body.get("filters", []))
    _validate_goal_names(filters, site)
    _validate_v2_metrics(metrics, dimensions, filters)
    include = _parse_v2_include(body.get("include", {}), dimensions)
    limit, offset = _parse_v2_pagination(body.get("pagination", {}))
    order_by = _parse_v2_order_by(body.get("order_by"), metrics, dimensions, body.get("dimensions"))

    query = Query(span.first, span.last, tuple(metrics), tuple(dimensions), tuple(filters))
    echo = {
        "site_id": body["site_id"],
        "metrics": metrics,
        "date_range": span.iso(),
        "filters": body.get("filters", []),
        "dimensions": dimensions,
        "order_by": [list(entry) for entry in order_by],
        "include": include,
        "pagination": {"limit": limit, "offset": offset},
    }
    return V2Request(query, order_by, include, limit, offset, echo)


def _parse_v2_dimensions(raw: Any, span: Span) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise _bad_request(f"Invalid dimensions {_inspect(raw)}")
    dimensions = [resolve_time_dimension(span) if d == "time" else d for d in raw]
    for dimension in dimensions:
        _check_dimension(dimension)
    if len(set(dimensions)) != len(dimensions):
        raise _bad_request("Some dimensions are listed more than once.")
    if sum(d in TIME_DIMENSIONS for d in dimensions) > 1:
        raise _bad_request("Only one time dimension can be queried at a time.")
    return dimensions


def _parse_v2_filters(raw: Any) -> list[Filter]:
    if not isinstance(raw, list):
        raise _bad_request("Invalid filters passed.")
    filters = [_parse_v2_filter(item) for item in raw]
    for item in filters:
        if not isinstance(item, Condition) and _nested_goal_filter(item):
            raise _bad_request(
                "Invalid filters. Dimension `event:goal` can only be filtered at the top level."
            )
    return filters


def _nested_goal_filter(item: Filter) -> bool:
    """A goal condition under and/or/not (``has_done`` is allowed to hold one)."""
    if isinstance(item, SessionDid):
        return False
    if isinstance(item, Not):
        return _filters_on((item.filter,), GOAL)
    if isinstance(item, (AllOf, AnyOf)):
        return _filters_on(item.filters, GOAL)
    return False


def _parse_v2_filter(raw: Any) -> Filter:
    if not isinstance(raw, list) or len(raw) < 2 or not isinstance(raw[0], str):
        raise _bad_request(f"Invalid filter {_inspect(raw)}")
    op = raw[0]
    if op in ("and", "or"):
        if len(raw) != 2 or not isinstance(raw[1], list) or not raw[1]:
            raise _bad_request(f"Invalid filter {_inspect(raw)}")
        children = tuple(_parse_v2_filter(child) for child in raw[1])
        return AllOf(children) if op == "and" else AnyOf(children)
    if op in ("not", "has_done", "has_not_done"):
        if len(raw) != 2:
            raise _bad_request(f"Invalid filter {_inspect(raw)}")
        inner = _parse_v2_filter(raw[1])
        return Not(inner) if op == "not" else SessionDid(inner, did=op == "has_done")
    if op not in OPERATORS:
        raise _bad_request(f"Unknown operator for filter {_inspect(raw)}.")
    if len(raw) not in (3, 4) or not isinstance(raw[1], str):
        raise _bad_request(f"Invalid filter {_inspect(raw)}")
    dimension, values = raw[1], raw[2]
    _check_dimension(dimension, allow_time=False)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad_request(f"Invalid filter {_inspect(raw)}")
    modifiers = raw[3] if len(raw) == 4 else {}
    if (
        not isinstance(modifiers, dict)
        or set(modifiers) - {"case_sensitive"}
        or not isinstance(modifiers.get("case_sensitive", True), bool)
    ):
        raise _bad_request(f"Invalid filter {_inspect(raw)}")
    if op.startswith("matches"):
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error:
                message = f"Invalid filter {_inspect(raw)}: bad regular expression"
                raise _bad_request(message) from None
    return Condition(op, dimension, tuple(values), modifiers.get("case_sensitive", True))


def _validate_v2_metrics(
    metrics: Sequence[str], dimensions: Sequence[str], filters: Sequence[Filter]
) -> None:
    for metric in metrics:
        if metric in ("conversion_rate", "group_conversion_rate") and not (
            GOAL in dimensions or _filters_on(filters, GOAL)
        ):
            raise _bad_request(
                f"Metric `{metric}` can only be queried with event:goal filters or dimensions."
            )
        if metric == "views_per_visit":
            if _filters_on(filters, PAGE):
                raise _bad_request(
                    f"Metric `{metric}` cannot be queried with a filter on `event:page`."
                )
            if dimensions:
                raise _bad_request(f"Metric `{metric}` cannot be queried with `dimensions`.")
    session_metrics = [m for m in metrics if m in SESSION_METRICS]
    if session_metrics and any(d in EVENT_DIMENSIONS and d != PAGE for d in dimensions):
        raise _bad_request(
            f"Session metric(s) `{', '.join(session_metrics)}` cannot be queried along with "
            "event dimensions."
        )


def _parse_v2_include(raw: Any, dimensions: Sequence[str]) -> dict[str, bool]:
    if not isinstance(raw, dict):
        raise _bad_request("#/include: Type mismatch. Expected Object.")
    for key, value in raw.items():
        if key == "comparisons":
            raise _bad_request("include.comparisons is not supported by this simulated Plausible.")
        if key not in _V2_INCLUDE:
            raise _bad_request(f"#/include/{key}: Schema does not allow additional properties.")
        if not isinstance(value, bool):
            raise _bad_request(f"#/include/{key}: Type mismatch. Expected Boolean.")
    include = {**_V2_INCLUDE, **raw}
    if include["time_labels"] and not any(d in TIME_DIMENSIONS for d in dimensions):
        raise _bad_request("Invalid include.time_labels: requires a time dimension.")
    return include


def _parse_v2_pagination(raw: Any) -> tuple[int, int]:
    if not isinstance(raw, dict) or set(raw) - {"limit", "offset"}:
        raise _bad_request("#/pagination: Schema does not allow additional properties.")
    limit, offset = raw.get("limit", 10_000), raw.get("offset", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise _bad_request("#/pagination/limit: Expected an integer from 1 to 10000.")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise _bad_request("#/pagination/offset: Expected a non-negative integer.")
    return limit, offset


def _parse_v2_order_by(
    raw: Any, metrics: Sequence[str], dimensions: Sequence[str], requested: Any
) -> list[tuple[str, str]]:
    """Explicit entries (``"time"`` naming the resolved time dimension), or Plausible's
    default: time ascending when grouped by time, then the first metric descending."""
    time_dimension = next((d for d in dimensions if d in TIME_DIMENSIONS), None)
    if raw is None:
        default = [(metrics[0], "desc")]
        return [(time_dimension, "asc"), *default] if time_dimension else default
    if not isinstance(raw, list):
        raise _bad_request(f"Invalid order_by {_inspect(raw)}.")
    entries = []
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in ("asc", "desc")):
            raise _bad_request(f"Invalid order_by entry {_inspect(entry)}.")
        name = time_dimension if entry[0] == "time" and "time" in (requested or []) else entry[0]
        if name not in metrics and name not in dimensions:
            raise _bad_request(
                f"Invalid order_by entry {_inspect(entry)}. Entry is not a queried metric or "
                "dimension."
            )
        entries.append((name, entry[1]))
    return entries


def order_rows(
    rows: list[Row], dimensions: Sequence[str], order_by: Sequence[tuple[str, str]]
) -> list[Row]:
    """Sort by the ``order_by`` entries, ties by dimension values, for a stable answer."""
    ordered = sorted(rows, key=lambda row: row.dimensions)
    for name, direction in reversed(order_by):
        if name in dimensions:
            index = dimensions.index(name)
            ordered.sort(key=lambda row: row.dimensions[index], reverse=direction == "desc")
        else:
            ordered.sort(key=lambda row: row.metrics[name], reverse=direction == "desc")
    return ordered


def answer_v2(request: V2Request, site: IndexedSite, now: float) -> dict[str, Any]:
    """The v2 response body: a page of ordered rows, ``meta`` as asked, the query echo."""
    query = request.query
    rows = order_rows(site.evaluate(query, now), query.dimensions, request.order_by)
    page = rows[request.offset : request.offset + request.limit]
    meta: dict[str, Any] = {}
    if request.include["time_labels"]:
        time_dimension = next(d for d in query.dimensions if d in TIME_DIMENSIONS)
        meta["time_labels"] = time_labels(time_dimension, query.first, query.last)
    if request.include["total_rows"]:
        meta["total_rows"] = len(rows)
    results = [
        {"metrics": [row.metrics[m] for m in query.metrics], "dimensions": list(row.dimensions)}
        for row in page
    ]
    return {"results": results, "meta": meta, "query": request.echo}


# ---------------------------------------------------------------------------------------------
# v1


def parse_v1_filters(text: str | None) -> list[Filter]:
    """``event:goal==Signup;visit:source==Google|Slack;event:page!=/docs*``.

    ``|`` lists alternatives (``\\|`` is a literal bar); ``*`` / ``**`` are path wildcards.
    """
    if not text:
        return []
    filters = []
    for part in text.split(";"):
        match = re.match(r"^\s*([^=!]+?)\s*(==|!=)\s*(.*?)\s*$", part)
        if not match:
            raise _bad_request(f"Invalid filter expression {_inspect(part)}.")
        dimension, operator, raw_value = match.groups()
        _check_dimension(dimension, allow_time=False)
        values = [v.replace("\\|", "|") for v in re.split(r"(?<!\\)\|", raw_value)]
        if any("*" in v for v in values):
            condition = Condition("matches", dimension, tuple(wildcard_regex(v) for v in values))
        else:
            condition = Condition("is", dimension, tuple(values))
        filters.append(Not(condition) if operator == "!=" else condition)
    return filters


def _v1_metrics(
    params: dict[str, str], dimension: str | None, filters: Sequence[Filter]
) -> list[str]:
    """The ``metrics`` parameter (default ``visitors``) with v1's per-metric rules."""
    metrics = params.get("metrics", "visitors").split(",")
    if len(set(metrics)) != len(metrics):
        raise _bad_request("Metrics cannot be queried multiple times.")
    event_only = (GOAL, "event:name", "event:props:team")
    for metric in metrics:
        if metric not in METRICS or metric in ("group_conversion_rate", "percentage"):
            raise _bad_request(
                f"The metric `{metric}` is not recognized. Find valid metrics from the "
                "documentation: https://plausible.io/docs/stats-api#metrics"
            )
        if metric == "conversion_rate" and dimension != GOAL and not _filters_on(filters, GOAL):
            raise _bad_request(
                f"Metric `{metric}` can only be queried in a goal breakdown or with a goal filter"
            )
        if metric == "views_per_visit":
            if _filters_on(filters, PAGE):
                raise _bad_request(
                    f"Metric `{metric}` cannot be queried with a filter on `event:page`."
                )
            if dimension is not None:
                raise _bad_request(f"Metric `{metric}` is not supported in breakdown queries.")
        if metric in SESSION_METRICS:
            if dimension in event_only:
                raise _bad_request(
                    f"Session metric `{metric}` cannot be queried for breakdown by `{dimension}`."
                )
            on = next((d for d in event_only if _filters_on(filters, d)), None)
            if on:
                raise _bad_request(
                    f"Session metric `{metric}` cannot be queried when using a filter on `{on}`."
                )
    return metrics


def _v1_filters(params: dict[str, str], site: IndexedSite) -> list[Filter]:
    filters = parse_v1_filters(params.get("filters"))
    _validate_goal_names([f.filter if isinstance(f, Not) else f for f in filters], site)
    return filters


def _percent_change(metric: str, old: float | None, new: float | None) -> float | int | None:
    """v1's ``change``: percentage points for rates, percent change for counts."""
    if old is None or new is None:
        return None
    if metric in ("bounce_rate", "conversion_rate"):
        return round(new - old, 1) if metric == "conversion_rate" else new - old
    if old == 0:
        return 100 if new > 0 else 0
    return round((new - old) / old * 100)


def answer_v1_aggregate(params: dict[str, str], site: IndexedSite, now: float) -> dict[str, Any]:
    """``/api/v1/stats/aggregate``, with ``compare=previous_period`` support."""
    _, span = resolve_v1_period(params, int(now))
    filters = _v1_filters(params, site)
    metrics = _v1_metrics(params, None, filters)
    query = Query(span.first, span.last, tuple(metrics), (), tuple(filters))
    current = site.evaluate(query, now)[0].metrics
    if params.get("compare") != "previous_period":
        return {"results": {m: {"value": current[m]} for m in metrics}}
    before = span.previous()
    earlier = Query(before.first, before.last, query.metrics, (), query.filters)
    previous = site.evaluate(earlier, now)[0].metrics
    return {
        "results": {
            m: {
                "value": current[m],
                "change": _percent_change(m, previous[m], current[m]),
                "comparison_value": previous[m],
            }
            for m in metrics
        }
    }


def answer_v1_timeseries(params: dict[str, str], site: IndexedSite, now: float) -> dict[str, Any]:
    """``/api/v1/stats/timeseries``: every bucket of the period, empty ones zero-filled."""
    period, span = resolve_v1_period(params, int(now))
    interval = params.get("interval")
    interval = "day" if interval == "date" else interval
    if interval is not None and interval not in ("day", "month"):
        raise _bad_request(
            f"Error parsing `interval` parameter: invalid interval `{interval}`. Valid intervals "
            "are `day`, `month`"
        )
    if interval is None:
        interval = {"day": "hour", "6mo": "month", "12mo": "month"}.get(period, "day")
    dimension = f"time:{interval}"
    filters = _v1_filters(params, site)
    metrics = _v1_metrics(params, None, filters)
    query = Query(span.first, span.last, tuple(metrics), (dimension,), tuple(filters))
    by_label = {row.dimensions[0]: row.metrics for row in site.evaluate(query, now)}
    labels = time_labels(dimension, span.first, span.last)
    empty = _v1_empty(metrics)
    return {"results": [{"date": label, **by_label.get(label, empty)} for label in labels]}


def _v1_empty(metrics: Sequence[str]) -> dict[str, int | float | None]:
    """A zero-filled v1 bucket: zeros, floats for rates, and no visit duration at all."""
    floats = ("views_per_visit", "bounce_rate", "conversion_rate")
    return {m: None if m == "visit_duration" else 0.0 if m in floats else 0 for m in metrics}


def answer_v1_breakdown(params: dict[str, str], site: IndexedSite, now: float) -> dict[str, Any]:
    """``/api/v1/stats/breakdown``: one property, largest first metric first, paged."""
    _, span = resolve_v1_period(params, int(now))
    prop = params.get("property")
    if prop is None:
        raise _bad_request(
            "The `property` parameter is required. Please provide at least one property to show "
            "a breakdown by."
        )
    if prop not in _V1_PROPERTY_KEYS:
        raise _bad_request(
            f"Invalid property '{prop}'. Please provide a valid property for the breakdown "
            "endpoint: https://plausible.io/docs/stats-api#properties"
        )
    limit = _positive_int(
        params, "limit", 100, 1_000, "Please provide limit as a number between 1 and 1000."
    )
    page = _positive_int(params, "page", 1, None, "Please provide page as a positive number.")
    filters = _v1_filters(params, site)
    metrics = _v1_metrics(params, prop, filters)
    query = Query(span.first, span.last, tuple(metrics), (prop,), tuple(filters))
    rows = order_rows(site.evaluate(query, now), [prop], [(metrics[0], "desc")])
    key = _V1_PROPERTY_KEYS[prop]
    chosen = rows[(page - 1) * limit : page * limit]
    return {"results": [{key: row.dimensions[0], **row.metrics} for row in chosen]}


def _positive_int(
    params: dict[str, str], name: str, default: int, maximum: int | None, message: str
) -> int:
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:
        raise _bad_request(message) from None
    if value < 1 or (maximum is not None and value > maximum):
        raise _bad_request(message)
    return value


# ---------------------------------------------------------------------------------------------
# The application


def build_plausible_app(
    population: Population,
    *,
    api_key: str,
    site_id: str,
    api_versions: Sequence[str] = ("v1", "v2"),
    clock: Callable[[], float] = time.time,
    latency_s: float = 0.0,
) -> web.Application:
    """An aiohttp application serving the Stats API over ``population``.

    ``api_versions`` lists the generations served; without ``"v2"``, ``/api/v2/query`` answers
    404 like Plausible CE v2.0. ``latency_s`` delays every response. Only events with a
    timestamp at or before ``clock()`` exist.
    """
    site = IndexedSite(population)

    def check_key(request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PlausibleError(401, MISSING_KEY)
        if not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise PlausibleError(401, INVALID_KEY_OR_SITE)

    def check_site(requested: Any) -> None:
        # A good key with somebody else's site gets the very same answer as a bad key.
        if requested in (None, ""):
            raise _bad_request(MISSING_SITE)
        if requested != site_id:
            raise PlausibleError(401, INVALID_KEY_OR_SITE)

    def v1_handler(answer: Callable[[dict[str, str], IndexedSite, float], Any]):
        async def handle(request: web.Request) -> web.Response:
            params = dict(request.query)
            check_key(request)
            check_site(params.get("site_id"))
            return web.json_response(answer(params, site, clock()))

        return handle

    async def v2_query(request: web.Request) -> web.Response:
        check_key(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise _bad_request("Invalid request body: expected a JSON object.")
        check_site(body.get("site_id"))
        now = clock()
        return web.json_response(answer_v2(parse_v2(body, site, int(now)), site, now))

    def realtime(_params: dict[str, str], indexed: IndexedSite, now: float) -> int:
        return indexed.realtime_visitors(now)

    app = web.Application(middlewares=[_error_middleware(latency_s)])
    if "v1" in api_versions:
        app.router.add_get("/api/v1/stats/realtime/visitors", v1_handler(realtime))
        app.router.add_get("/api/v1/stats/aggregate", v1_handler(answer_v1_aggregate))
        app.router.add_get("/api/v1/stats/timeseries", v1_handler(answer_v1_timeseries))
        app.router.add_get("/api/v1/stats/breakdown", v1_handler(answer_v1_breakdown))
    if "v2" in api_versions:
        app.router.add_post("/api/v2/query", v2_query)
    return app


def _error_middleware(latency_s: float):
    """Delay every answer by ``latency_s``; turn errors into Plausible's error bodies."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if latency_s > 0:
            await asyncio.sleep(latency_s)
        try:
            return await handler(request)
        except PlausibleError as error:
            return web.json_response({"error": error.message}, status=error.status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("simulated Plausible failed on %s", request.path)
            return web.json_response(
                {"error": "internal server error", "support_hash": secrets.token_hex(8)}, status=500
            )

    return middleware
