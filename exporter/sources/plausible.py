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
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from ..config import PlausibleConfig
from ..errors import SourceError
from ..health import HealthRegistry
from ..timeranges import ResolvedRange
from .http import RETRYABLE_STATUSES, ClientSettings, HttpFailure, RateLimited, UpstreamClient

log = logging.getLogger(__name__)

SOURCE = "plausible"
AGGREGATE_METRICS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
SERIES_METRICS = ("visitors", "pageviews")
# v1 breakdown rows name their key after the property without its prefix.
V1_BREAKDOWN_KEYS = {"event:page": "page", "visit:source": "source", "event:goal": "goal"}
REALTIME_WINDOW = timedelta(minutes=5)  # Plausible's definition of "current visitors"
GOAL = "event:goal"
HOUR, DAY = "time:hour", "time:day"
PAGE_LIMIT = 10_000  # v2's page size (its default and largest): a year of days by goal is 366 rows per goal
GOAL_METRICS = ("visitors", "events")
GOAL_LIMIT = 1000  # v1's largest page; a site has far fewer goals than this
WEEK = timedelta(days=7)


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


@dataclass(frozen=True)
class GoalSequenceVisitors:
    """Visitors per step of a sequence of goals; ``same_session`` says how they were counted."""

    visitors: list[float]
    same_session: bool  # v2: step k = sessions that completed goals 1..k; v1: each goal on its own
    approximation: str | None = None  # set when the API could not express the exact window


@dataclass(frozen=True)
class GoalUses:
    """One goal's conversions: unique visitors who completed it, and how many times it was completed."""

    visitors: float
    events: float


class PlausibleClient(UpstreamClient):
    """Speaks both API generations; ``api_version`` is resolved on first use when ``auto``."""

    # A 429 means the hourly budget is spent: another attempt within seconds cannot succeed, so the
    # client backs off until the hour instead (see ``_call``).
    retryable_statuses = RETRYABLE_STATUSES - {429}

    def __init__(self, config: PlausibleConfig, health: HealthRegistry) -> None:
        super().__init__(SOURCE, ClientSettings.from_config(config), health, bearer=config.api_key)
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
        if window.granularity == "day":
            return await self.daily(window.first_day, window.last_day, metrics)
        if await self._version() == "v2":
            rows = await self._v2_rows(window, metrics, dimensions=[HOUR], order_by=[[HOUR, "asc"]])
            found = {self._label_time(str(labels[0])): values for values, labels in rows}
        else:
            found = {}
            for params in self._v1_series_requests(window):
                found |= await self._v1_series({**params, "metrics": ",".join(metrics)}, metrics)
        return _zero_filled(window.buckets(), found, metrics)

    async def daily(self, first: date, last: date, metrics: Sequence[str] = SERIES_METRICS) -> list[SeriesPoint]:
        """One point per day ``first..last`` (the site's calendar days), zero-filled; one request on
        either API, however many days."""
        span = [first.isoformat(), last.isoformat()]
        if await self._version() == "v2":
            rows = await self._v2_query({"metrics": list(metrics), "date_range": span, "dimensions": [DAY],
                                         "order_by": [[DAY, "asc"]]})
            found = {self._label_time(str(labels[0])): values for values, labels in rows}
        else:
            found = await self._v1_series({"period": "custom", "date": ",".join(span), "interval": "day",
                                           "metrics": ",".join(metrics)}, metrics)
        return _zero_filled(self._days(first, last), found, metrics)

    async def daily_goal_visitors(self, first: date, last: date, goals: Sequence[str]) -> dict[str, list[float]]:
        """Unique visitors of each of ``goals`` on each day ``first..last`` (0 without conversions).

        v2 asks once (``event:goal`` x ``time:day``, a page per 10,000 rows). v1 has no time
        dimension in breakdowns, so it asks one timeseries filtered on each goal; a goal Plausible
        does not know (a 400) reads as no conversions, as it does on v2.
        """
        days = self._days(first, last)
        position = {day: index for index, day in enumerate(days)}
        series = {goal: [0.0] * len(days) for goal in goals}
        span = [first.isoformat(), last.isoformat()]
        if await self._version() == "v2":
            offset = 0
            while True:
                rows = await self._v2_query({"metrics": ["visitors"], "date_range": span, "dimensions": [GOAL, DAY],
                                             "pagination": {"limit": PAGE_LIMIT, "offset": offset}})
                for values, labels in rows:
                    goal, label = _expect_labels(labels, 2)
                    if goal in series:
                        series[goal][self._day_index(self._label_time(str(label)), position)] = values[0] or 0.0
                if len(rows) < PAGE_LIMIT:
                    return series
                offset += PAGE_LIMIT
        for goal in goals:
            try:
                found = await self._v1_series({"period": "custom", "date": ",".join(span), "interval": "day",
                                               "metrics": "visitors", "filters": f"{GOAL}=={_v1_filter_value(goal)}"},
                                              ["visitors"])
            except SourceError as error:
                if error.code != "bad_request":
                    raise
                continue  # Plausible has no such goal
            for moment, (visitors,) in found.items():
                series[goal][self._day_index(moment, position)] = visitors or 0.0
        return series

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

    async def all_time(self, today: date,
                       metrics: Sequence[str] = ("visitors", "pageviews")) -> dict[str, float | None]:
        """Totals since the site's stats began (v1 has no ``all`` period: custom from a start date)."""
        if await self._version() == "v2":
            (row,) = await self._v2_query({"metrics": list(metrics), "date_range": "all"}) or [None]
            return dict(zip(metrics, row[0] if row else [0] * len(metrics)))
        data = await self._v1("aggregate", {"period": "custom", "date": f"{self.stats_start},{today.isoformat()}",
                                            "metrics": ",".join(metrics)})
        results = _field(data, "results", dict)
        return {m: _number((results.get(m) or {}).get("value")) for m in metrics}

    # -- goals (feature adoption) -----------------------------------------------------------------
    # Plausible omits goals without conversions from goal breakdowns: a goal missing from a result
    # had no uses in that range. Every question below costs one request unless it says otherwise.

    async def goal_uses(self, window: ResolvedRange) -> tuple[dict[str, GoalUses], str | None]:
        """Every goal with conversions in ``window`` (one breakdown), and v1's approximation note."""
        rows, note = await self.breakdown(window, GOAL, limit=GOAL_LIMIT, metrics=GOAL_METRICS)
        return {row.name: _goal_uses(row.metrics) for row in rows}, note

    async def all_time_goal_uses(self, today: date) -> dict[str, GoalUses]:
        """Every goal's conversions since the site's stats began (v1: custom from ``stats_start_date``)."""
        return await self._goal_breakdown(date.fromisoformat(self.stats_start), today, all_time=True)

    async def weekly_goal_visitors(self, first_week: date, weeks: int) -> dict[str, list[float]]:
        """Unique visitors per goal in each of ``weeks`` whole weeks from Monday ``first_week``.

        Each list is oldest week first; a week without conversions is 0. v2 asks once
        (``event:goal`` x ``time:week``). v1 has neither weekly buckets nor a time dimension in
        breakdowns, so it asks one goal breakdown per week: ``weeks`` requests, however many
        features are configured, and with no goal filter that an unknown goal could fail.
        """
        series: dict[str, list[float]] = {}
        if await self._version() == "v2":
            rows = await self._v2_query({"metrics": ["visitors"], "date_range": _week_span(first_week, weeks),
                                         "dimensions": [GOAL, "time:week"],
                                         "pagination": {"limit": 10000, "offset": 0}})
            for values, labels in rows:
                _expect_labels(labels, 2)
                week = self._week_index(str(labels[1]), first_week, weeks)
                series.setdefault(str(labels[0]), [0.0] * weeks)[week] += values[0] or 0.0
            return series
        per_week = await asyncio.gather(*(self._goal_breakdown(start, start + WEEK - timedelta(days=1))
                                          for start in (first_week + i * WEEK for i in range(weeks))))
        for week, uses in enumerate(per_week):
            for goal, use in uses.items():
                series.setdefault(goal, [0.0] * weeks)[week] = use.visitors
        return series

    async def weekly_visitors(self, first_week: date, weeks: int) -> list[float]:
        """Unique visitors of the whole site in each of ``weeks`` whole weeks from Monday ``first_week``.

        v1 has no weekly interval, so its daily visitors are summed per week. That is the weekly
        count Plausible itself would give: its visitor id changes every day, so a weekly count is
        already the sum of the daily ones (up to sessions that run over midnight).
        """
        totals = [0.0] * weeks
        if await self._version() == "v2":
            rows = await self._v2_query({"metrics": ["visitors"], "date_range": _week_span(first_week, weeks),
                                         "dimensions": ["time:week"]})
            labelled = [(str(_expect_labels(labels, 1)[0]), values[0]) for values, labels in rows]
        else:
            first, last = _week_span(first_week, weeks)
            data = await self._v1("timeseries", {"period": "custom", "date": f"{first},{last}", "interval": "day",
                                                 "metrics": "visitors"})
            labelled = [(str(row.get("date")), _number(row.get("visitors")))
                        for row in (_expect(row, dict, "timeseries row") for row in _field(data, "results", list))]
        for label, visitors in labelled:
            totals[self._week_index(label, first_week, weeks)] += visitors or 0.0
        return totals

    async def goal_exists(self, goal: str) -> bool:
        """Whether Plausible has a goal with this display name.

        The Stats API lists no goals, and a goal without conversions is as absent from a breakdown
        as one never configured. Only an ``is`` filter tells them apart: it fails with 400 when the
        goal is unknown. So ask for today's visitors filtered on the goal.
        """
        try:
            if await self._version() == "v2":
                await self._v2_query({"metrics": ["visitors"], "date_range": "day",
                                      "filters": [["is", GOAL, [goal]]]})
            else:
                await self._v1("aggregate", {"period": "day", "metrics": "visitors",
                                             "filters": f"{GOAL}=={_v1_filter_value(goal)}"})
        except SourceError as error:
            if error.code == "bad_request":
                return False
            raise
        return True

    async def goal_sequence_visitors(self, window: ResolvedRange, goals: Sequence[str]) -> GoalSequenceVisitors:
        """Visitors reaching each of ``goals`` in order, as near as the API allows (no funnel endpoint).

        v2 asks once per step: step k counts the visitors of sessions that completed goals 1..k
        (``has_done`` filters). v1 cannot combine goals: one goal breakdown gives each goal's own
        visitors, whatever else they did.
        """
        if await self._version() == "v2":
            date_range = _v2_date_range(window)
            answers = await asyncio.gather(*(
                self._v2_query({"metrics": ["visitors"], "date_range": date_range,
                                "filters": [["has_done", ["is", GOAL, [goal]]] for goal in goals[:step]]})
                for step in range(1, len(goals) + 1)))
            # An aggregate answers one row; its values are the metrics asked for, here only visitors.
            return GoalSequenceVisitors([(rows[0][0][0] or 0.0) if rows else 0.0 for rows in answers],
                                        same_session=True)
        uses, note = await self.goal_uses(window)
        return GoalSequenceVisitors([uses.get(goal, _goal_uses({})).visitors for goal in goals], same_session=False,
                                    approximation=note)

    async def _goal_breakdown(self, first: date, last: date, *, all_time: bool = False) -> dict[str, GoalUses]:
        """One goal breakdown over the days ``first..last`` (v2 says ``"all"`` for all time instead)."""
        if await self._version() == "v2":
            rows = await self._v2_query({"metrics": list(GOAL_METRICS),
                                         "date_range": "all" if all_time else [first.isoformat(), last.isoformat()],
                                         "dimensions": [GOAL], "pagination": {"limit": GOAL_LIMIT, "offset": 0}})
            return {str(_expect_labels(labels, 1)[0]): _goal_uses(dict(zip(GOAL_METRICS, values)))
                    for values, labels in rows}
        data = await self._v1("breakdown", {"period": "custom", "date": f"{first.isoformat()},{last.isoformat()}",
                                            "property": GOAL, "metrics": ",".join(GOAL_METRICS),
                                            "limit": str(GOAL_LIMIT)})
        rows = [_expect(row, dict, "breakdown row") for row in _field(data, "results", list)]
        return {str(row.get(V1_BREAKDOWN_KEYS[GOAL])): _goal_uses({m: _number(row.get(m)) for m in GOAL_METRICS})
                for row in rows}

    def _days(self, first: date, last: date) -> list[datetime]:
        """The start of each day ``first..last`` in the site's timezone."""
        return [datetime.combine(first + timedelta(days=i), time(), self.tz) for i in range((last - first).days + 1)]

    def _day_index(self, moment: datetime, position: dict[datetime, int]) -> int:
        """Which of the days asked for (``position``: their starts) a day label read as ``moment`` is."""
        index = position.get(moment)
        if index is None:
            raise self.error(f"day {moment.date().isoformat()} lies outside the days asked for",
                             code="invalid_response")
        return index

    def _week_index(self, label: str, first_week: date, weeks: int) -> int:
        """Which week (0 = ``first_week``) a ``time:week`` label or a v1 day belongs to."""
        day = self._label_time(label).date()
        index = (day - first_week).days // 7
        if not 0 <= index < weeks:
            raise self.error(f"time label {label[:40]!r} lies outside the weeks asked for", code="invalid_response")
        return index

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
        """period=day gives hourly rows, one calendar day per call."""
        return [{"period": "day", "date": day.isoformat()} for day in sorted({b.date() for b in window.buckets()})]

    async def _v1_series(self, params: dict[str, str], metrics: Sequence[str]) -> dict[datetime, list[float | None]]:
        """A v1 timeseries' rows by bucket start."""
        data = await self._v1("timeseries", params)
        rows = (_expect(row, dict, "timeseries row") for row in _field(data, "results", list))
        return {self._label_time(str(row.get("date"))): [_number(row.get(m)) for m in metrics] for row in rows}

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


def _zero_filled(buckets: Sequence[datetime], found: dict[datetime, list[float | None]],
                 metrics: Sequence[str]) -> list[SeriesPoint]:
    """A point per bucket; a bucket without a row (v2 omits empty ones) or a null value is 0."""
    empty = [0.0] * len(metrics)
    return [SeriesPoint(bucket, {m: v or 0.0 for m, v in zip(metrics, found.get(bucket, empty))}) for bucket in buckets]


def _v2_date_range(window: ResolvedRange) -> list[str]:
    if window.granularity == "day":
        return [window.first_day.isoformat(), window.last_day.isoformat()]
    return [window.start.isoformat(timespec="seconds"), window.end.isoformat(timespec="seconds")]


def _week_span(first_week: date, weeks: int) -> list[str]:
    return [first_week.isoformat(), (first_week + weeks * WEEK - timedelta(days=1)).isoformat()]


def _v1_filter_value(value: str) -> str:
    """A literal v1 filter value: there ``|`` separates alternatives unless escaped."""
    return value.replace("|", "\\|")


def _goal_uses(metrics: dict[str, float | None]) -> GoalUses:
    return GoalUses(visitors=metrics.get("visitors") or 0.0, events=metrics.get("events") or 0.0)


def _expect_labels(labels: list, count: int) -> list:
    if len(labels) != count:
        raise SourceError(SOURCE, f"unexpected response shape: {len(labels)} dimension labels, expected {count}",
                          code="invalid_response")
    return labels


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
