"""Plausible Analytics: Stats API v2 (``POST /api/v2/query``) and v1 (``GET /api/v1/stats/*``).

Both generations answer the same typed questions. ``api_version: auto`` asks v2 first and falls
back to v1 for good when the server answers 404 (Plausible CE v2.0 has only v1). Day ranges are
sent as explicit dates on both APIs, so the two agree; sub-day ranges are exact datetimes on v2,
while v1 can only count whole calendar days: its totals then cover the days that contain the
window, and the result says so (its hourly series stays exact).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from ..config import PlausibleConfig
from ..errors import SourceError
from ..health import HealthRegistry
from ..timeranges import ResolvedRange
from .http import ClientSettings, HttpFailure, RateLimited, UpstreamClient

log = logging.getLogger(__name__)

SOURCE = "plausible"
AGGREGATE_METRICS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
SERIES_METRICS = ("visitors", "pageviews")
# v1 breakdown rows name their key after the property without its prefix.
V1_BREAKDOWN_KEYS = {"event:page": "page", "visit:source": "source", "event:goal": "goal"}
REALTIME_WINDOW = timedelta(minutes=5)  # Plausible's definition of "current visitors"


@dataclass(frozen=True)
class Aggregate:
    metrics: dict[str, float | None]
    approximation: str | None = None  # set when the API could not express the exact window


@dataclass(frozen=True)
class SeriesPoint:
    bucket: datetime  # bucket start, tz-aware in the site's timezone
    values: dict[str, float]


@dataclass(frozen=True)
class BreakdownRow:
    name: str
    metrics: dict[str, float | None]


class PlausibleClient(UpstreamClient):
    """Speaks both API generations; ``api_version`` is resolved on first use when ``auto``."""

    def __init__(self, config: PlausibleConfig, health: HealthRegistry) -> None:
        key = config.api_key
        super().__init__(
            SOURCE,
            ClientSettings(config.url or "", config.timeout_seconds, config.timeout_seconds * 2.5,
                           config.max_concurrency, config.max_retries, config.max_response_bytes),
            health,
            headers={"Authorization": f"Bearer {key.reveal()}"} if key else {},
            secrets=[key],
        )
        self.site_id = config.site_id or ""
        self.tz = ZoneInfo(config.timezone)
        self.stats_start = config.stats_start_date
        self.api_version = None if config.api_version == "auto" else config.api_version
        self._rate_limited_until: datetime | None = None
        self._detecting = asyncio.Lock()  # concurrent first calls detect the version once

    # -- typed questions ------------------------------------------------------------------------

    async def aggregate(self, window: ResolvedRange, metrics: Sequence[str] = AGGREGATE_METRICS) -> Aggregate:
        if await self._version() == "v2":
            (row,) = await self._v2_rows(window, metrics) or [None]
            values = row[0] if row else [0] * len(metrics)
            return Aggregate(dict(zip(metrics, values)))
        params, note = self._v1_period(window)
        data = await self._v1("aggregate", {**params, "metrics": ",".join(metrics)})
        results = _field(data, "results", dict)
        return Aggregate({m: _number((results.get(m) or {}).get("value")) for m in metrics}, note)

    async def timeseries(self, window: ResolvedRange, metrics: Sequence[str] = SERIES_METRICS) -> list[SeriesPoint]:
        """One point per bucket the window touches, zero-filled: v2 omits empty buckets."""
        dimension = "time:hour" if window.granularity == "hour" else "time:day"
        if await self._version() == "v2":
            rows = await self._v2_rows(window, metrics, dimensions=[dimension], order_by=[[dimension, "asc"]])
            found = {self._label_time(str(labels[0])): values for values, labels in rows}
        else:
            found = {}
            for params in self._v1_series_requests(window):
                data = await self._v1("timeseries", {**params, "metrics": ",".join(metrics)})
                for row in _field(data, "results", list):
                    row = _expect(row, dict, "timeseries row")
                    found[self._label_time(str(row.get("date")))] = [_number(row.get(m)) for m in metrics]
        empty = [0.0] * len(metrics)
        return [SeriesPoint(bucket, {m: v or 0.0 for m, v in zip(metrics, found.get(bucket, empty))})
                for bucket in window.buckets()]

    async def breakdown(self, window: ResolvedRange, dimension: str, *, limit: int = 10,
                        metrics: Sequence[str] = SERIES_METRICS) -> tuple[list[BreakdownRow], str | None]:
        if await self._version() == "v2":
            rows = await self._v2_rows(window, metrics, dimensions=[dimension], order_by=[[metrics[0], "desc"]],
                                       limit=limit)
            return [BreakdownRow(str(labels[0]), dict(zip(metrics, values))) for values, labels in rows], None
        params, note = self._v1_period(window)
        data = await self._v1("breakdown", {**params, "property": dimension, "metrics": ",".join(metrics),
                                            "limit": str(limit)})
        key = V1_BREAKDOWN_KEYS.get(dimension, dimension.rsplit(":", 1)[-1])
        rows = [_expect(row, dict, "breakdown row") for row in _field(data, "results", list)]
        return [BreakdownRow(str(row.get(key)), {m: _number(row.get(m)) for m in metrics}) for row in rows], note

    async def realtime_visitors(self, now: datetime) -> int:
        if await self._version() == "v2":
            span = [(now - REALTIME_WINDOW).isoformat(timespec="seconds"), now.isoformat(timespec="seconds")]
            (row,) = await self._v2_query({"metrics": ["visitors"], "date_range": span}) or [None]
            return int(row[0][0]) if row else 0
        data = await self.request_json("GET", "api/v1/stats/realtime/visitors", params={"site_id": self.site_id})
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise self.error("realtime/visitors did not answer a number", code="invalid_response")
        return int(data)

    async def all_time(self, today: date, metrics: Sequence[str] = ("visitors", "pageviews")) -> dict[str, float | None]:
        """Totals since the site's stats began (v1 has no ``all`` period: custom from a start date)."""
        if await self._version() == "v2":
            (row,) = await self._v2_query({"metrics": list(metrics), "date_range": "all"}) or [None]
            return dict(zip(metrics, row[0] if row else [0] * len(metrics)))
        data = await self._v1("aggregate", {"period": "custom", "date": f"{self.stats_start},{today.isoformat()}",
                                            "metrics": ",".join(metrics)})
        results = _field(data, "results", dict)
        return {m: _number((results.get(m) or {}).get("value")) for m in metrics}

    # -- v2 ---------------------------------------------------------------------------------------

    async def _v2_rows(self, window: ResolvedRange, metrics: Sequence[str], **extra: Any) -> list:
        query: dict[str, Any] = {"metrics": list(metrics), "date_range": _v2_date_range(window)}
        if extra.get("dimensions"):
            query["dimensions"] = extra["dimensions"]
        if extra.get("order_by"):
            query["order_by"] = extra["order_by"]
        if extra.get("limit"):
            query["pagination"] = {"limit": extra["limit"], "offset": 0}
        return await self._v2_query(query)

    async def _v2_query(self, query: dict[str, Any]) -> list[tuple[list[float | None], list]]:
        """Rows of ``(metric values, dimension labels)``; shape errors are upstream errors."""
        data = await self._call("POST", "api/v2/query", json_body={"site_id": self.site_id, **query})
        rows = []
        for row in _field(data, "results", list):
            row = _expect(row, dict, "result row")
            values = _expect(row.get("metrics"), list, "result row metrics")
            labels = _expect(row.get("dimensions", []), list, "result row dimensions")
            rows.append(([_number(v) for v in values], labels))
        return rows

    # -- v1 ---------------------------------------------------------------------------------------

    async def _v1(self, endpoint: str, params: dict[str, str]) -> Any:
        return await self._call("GET", f"api/v1/stats/{endpoint}", params={"site_id": self.site_id, **params})

    def _v1_period(self, window: ResolvedRange) -> tuple[dict[str, str], str | None]:
        first, last = window.first_day, window.last_day
        params = {"period": "custom", "date": f"{first.isoformat()},{last.isoformat()}"}
        if window.granularity != "hour":
            return params, None
        note = (f"Plausible Stats API v1 cannot query part of a day: totals and breakdowns cover the whole "
                f"calendar day(s) {first.isoformat()}..{last.isoformat()} ({self.tz.key}) containing the "
                f"{window.time_range.value} window; the hourly series is exact.")
        return params, note

    def _v1_series_requests(self, window: ResolvedRange) -> list[dict[str, str]]:
        if window.granularity == "hour":  # period=day gives hourly rows, one calendar day per call
            days = sorted({bucket.date() for bucket in window.buckets()})
            return [{"period": "day", "date": day.isoformat()} for day in days]
        return [{"period": "custom", "date": f"{window.first_day.isoformat()},{window.last_day.isoformat()}",
                 "interval": "day"}]

    # -- shared -----------------------------------------------------------------------------------

    async def _version(self) -> str:
        async with self._detecting:
            if self.api_version is None:
                await self._detect_version()
        return self.api_version

    async def _detect_version(self) -> None:
        """Ask v2 once; a 404 means a server with v1 only (Plausible CE v2.0)."""
        try:
            await self._call("POST", "api/v2/query",
                             json_body={"site_id": self.site_id, "metrics": ["visitors"], "date_range": "day"})
            self.api_version = "v2"
        except SourceError as error:
            if error.code != "not_found":
                raise
            log.info("Plausible has no Stats API v2 (404): using v1")
            self.api_version = "v1"

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        now = datetime.now(timezone.utc)
        if self._rate_limited_until and now < self._rate_limited_until:
            raise RateLimited(SOURCE, self._rate_limit_message())
        try:
            return await self.request_json(method, path, **kwargs)
        except SourceError as error:
            if error.code == "rate_limited":
                # The budget is a fixed window that resets on the UTC hour; 429 has no Retry-After.
                self._rate_limited_until = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
                raise RateLimited(SOURCE, self._rate_limit_message()) from None
            raise

    def _rate_limit_message(self) -> str:
        until = self._rate_limited_until.strftime("%H:%M") if self._rate_limited_until else "?"
        return f"hourly request budget exhausted (HTTP 429); not asking again until {until}Z"

    def describe_failure(self, failure: HttpFailure) -> str:
        if failure.status == 401:
            return "HTTP 401: the API key is invalid or has no access to site_id (Plausible says the same for both)"
        if failure.status == 402:
            return "HTTP 402: the Plausible plan does not include the Stats API"
        return super().describe_failure(failure)

    def _label_time(self, label: str) -> datetime:
        """A v2 ``time:*`` label or v1 ``date``, in the site's timezone."""
        try:
            moment = datetime.fromisoformat(label)
        except ValueError:
            raise self.error(f"unexpected time label {label[:40]!r}", code="invalid_response") from None
        return moment.replace(tzinfo=self.tz) if moment.tzinfo is None else moment.astimezone(self.tz)


def _v2_date_range(window: ResolvedRange) -> list[str]:
    if window.granularity == "day":
        return [window.first_day.isoformat(), window.last_day.isoformat()]
    return [window.start.isoformat(timespec="seconds"), window.end.isoformat(timespec="seconds")]


def _field(data: Any, name: str, kind: type) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(name), kind):
        raise SourceError(SOURCE, f"unexpected response shape: '{name}' is missing or not a {kind.__name__}",
                          code="invalid_response")
    return data[name]


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise SourceError(SOURCE, f"unexpected response shape: {what} is not a {kind.__name__}",
                          code="invalid_response")
    return value


def _number(value: Any) -> float | None:
    """Plausible numbers may be ints or floats (or null in v1's empty buckets)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceError(SOURCE, f"unexpected response shape: {str(value)[:40]!r} is not a number",
                          code="invalid_response")
    return float(value) if math.isfinite(value) else None
