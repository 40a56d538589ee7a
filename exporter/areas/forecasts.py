"""Forecasts and anomaly flags of the tracked daily series (docs/forecasting.md, docs/api.md#forecast).

Every tracked series is gathered and analysed in one shared snapshot per TTL: one question to the
events backend and one or two Plausible requests fetch a year of days, and the pure analysis
(:mod:`exporter.analysis.forecast`, :mod:`exporter.analysis.anomalies`) forecasts, backtests and
scans them all at once. ``GET /api/v1/forecast``, ``GET /api/v1/anomalies`` and the collector all
read that snapshot: a request picks its part (one series' forecast cut to its horizon, the flags
of its time range), and each part is made once per snapshot, never per request.

The tracked series follow from the configuration and the sources that can run:

- ``active_users``: identified daily active users (the meaningful events, as the usage area
  counts them) when the events source exists, else Plausible's daily visitors;
- ``pageviews``: Plausible's daily page views;
- ``feature:<name>``: daily users of the feature's event (events source), else daily visitors of
  its Plausible goal;
- ``funnel_entries:<name>``: daily users of the funnel's first-step event (events source), else
  daily visitors of the first step's goal.

Days are UTC days for the events and the site's calendar days for Plausible. The days before a
source had any data are left out (a site younger than the year asked for is not a year of zeros),
so each source's series share one window and are filtered together.

The source of ``active_users`` owns the snapshot: its failure fails the refresh (the last
snapshot is served within the memo's limits). A failure of the other one, Plausible beside the
events, leaves its series out of that snapshot only: their forecasts answer its error, and the
flags of the others are served.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..analysis.anomalies import AnomalyReport, DayCheck, anomaly_report, last_day_check
from ..analysis.forecast import MAX_HORIZON_DAYS, DailySeries, Forecast, SeriesAnalysis, analyse
from ..analysis.segments import DAY_SECONDS
from ..concurrency import gather_or_cancel
from ..config import FeatureConfig, FunnelConfig
from ..errors import SourceError
from ..events.backend import EventsBackend
from ..sources.plausible import PlausibleClient
from ..timeranges import TimeRange, resolve
from .base import Area, Context, Snapshot
from .params import InvalidParameter, Param, time_range

GATHERED_DAYS = 364  # complete days asked for (52 weeks): one request per source, however many
SITE_METRICS = ("visitors", "pageviews")
DEFAULT_SERIES = "active_users"
DEFAULT_HORIZON = "14"
_HORIZON = re.compile(r"[1-9][0-9]?")


@dataclass(frozen=True)
class TrackedSeries:
    """One tracked series and what it counts: an event's daily users (``event``; None for the
    active users), or a Plausible site metric (``metric``) or goal (``goal``)."""

    name: str
    source: str  # "events" or "plausible"
    event: str | None = None
    metric: str | None = None
    goal: str | None = None


def tracked_series(features: Sequence[FeatureConfig], funnels: Sequence[FunnelConfig], *, events: bool,
                   plausible: bool) -> tuple[TrackedSeries, ...]:
    """The series tracked with the sources that can run, in the order the API lists them."""
    tracked = []
    if events:
        tracked.append(TrackedSeries("active_users", "events"))
    elif plausible:
        tracked.append(TrackedSeries("active_users", "plausible", metric="visitors"))
    if plausible:
        tracked.append(TrackedSeries("pageviews", "plausible", metric="pageviews"))
    counted = [(f"feature:{feature.name}", feature.event, feature.goal) for feature in features]
    counted += [(f"funnel_entries:{funnel.name}", funnel.steps[0].event, funnel.steps[0].goal) for funnel in funnels]
    for name, event, goal in counted:
        if events and event:
            tracked.append(TrackedSeries(name, "events", event=event))
        elif plausible and goal:
            tracked.append(TrackedSeries(name, "plausible", goal=goal))
    return tuple(tracked)


class ForecastSet:
    """One snapshot: every tracked series' analysis, and the parts the endpoints serve, each made
    once (a part's identity is what the API's encoded responses are kept by)."""

    def __init__(self, analyses: Mapping[str, SeriesAnalysis], unavailable: Mapping[str, SourceError],
                 made_at: float) -> None:
        self.analyses = analyses
        self.unavailable = unavailable  # series whose source failed this time, with its error
        self.made_at = made_at  # clock time the series were gathered
        self.checks: dict[str, DayCheck | None] = {name: last_day_check(one) for name, one in analyses.items()}
        self._forecasts: dict[tuple[str, int], Forecast] = {}
        self._reports: dict[date, AnomalyReport] = {}

    @classmethod
    def analysed(cls, series: Sequence[DailySeries], unavailable: Mapping[str, SourceError],
                 made_at: float) -> ForecastSet:
        return cls(analyse(series), unavailable, made_at)

    def forecast(self, series: str, horizon: int) -> Forecast:
        """The forecast of ``series`` for the next ``horizon`` days; its source's error when that
        source failed this time."""
        if series in self.unavailable:
            raise self.unavailable[series].with_traceback(None)
        key = (series, horizon)
        if key not in self._forecasts:
            self._forecasts[key] = self.analyses[series].forecast_for(horizon)
        return self._forecasts[key]

    def anomalies(self, since: date) -> AnomalyReport:
        """Flagged complete days on or after ``since``, every series, newest first."""
        if since not in self._reports:
            self._reports[since] = anomaly_report(self.analyses.values(), since)
        return self._reports[since]


class Forecasts:
    """The shared snapshot both areas read: its memo key, its sources and how it is made."""

    key: Hashable = ("forecasts", "every_series")

    def __init__(self, context: Context, events: EventsBackend | None, plausible: PlausibleClient | None,
                 features: Sequence[FeatureConfig], funnels: Sequence[FunnelConfig],
                 meaningful_events: Collection[str] | None) -> None:
        self.context = context
        self.events = events
        self.plausible = plausible
        self.meaningful_events = meaningful_events
        self.series = tracked_series(features, funnels, events=events is not None, plausible=plausible is not None)
        used = [source for source in ("events", "plausible") if any(one.source == source for one in self.series)]
        self.sources = tuple(used) or ("events", "plausible")  # the first owns the refresh

    @property
    def names(self) -> list[str]:
        return [one.name for one in self.series]

    def disabled_reason(self) -> str | None:
        if self.series:
            return None
        disabled = self.context.disabled
        return (f"forecasts need the events source ({disabled['events']}) "
                f"or Plausible ({disabled['plausible']})")

    async def compute(self) -> ForecastSet:
        now = self.context.clock()
        gathered = await gather_or_cancel(*(self._gather(source, now) for source in self.sources))
        order = {name: position for position, name in enumerate(self.names)}
        series = sorted((one for found, _ in gathered for one in found), key=lambda one: order[one.name])
        unavailable = {name: error for _, failed in gathered for name, error in failed.items()}
        # Off the event loop: a few milliseconds per series (docs/forecasting.md#cost).
        return await asyncio.to_thread(ForecastSet.analysed, series, unavailable, now)

    async def _gather(self, source: str, now: float) -> tuple[list[DailySeries], dict[str, SourceError]]:
        """The series of ``source``; when it is not the owner and fails, none, with its error."""
        try:
            return await (self._from_events(now) if source == "events" else self._from_plausible(now)), {}
        except SourceError as error:
            if source == self.sources[0]:
                raise
            return [], {one.name: error for one in self.series if one.source == source}

    async def _from_events(self, now: float) -> list[DailySeries]:
        """UTC days: one question to the backend for every event series."""
        mine = [one for one in self.series if one.source == "events"]
        start = (int(now) // DAY_SECONDS - GATHERED_DAYS) * DAY_SECONDS
        names = list(dict.fromkeys(one.event for one in mine if one.event))
        daily = await self.events.daily_users(names, start=start, end=int(now) + 1,
                                              meaningful_events=self.meaningful_events)
        values = {one.name: daily.active if one.event is None else daily.by_event[one.event] for one in mine}
        return _since_first_data(values, datetime.fromtimestamp(start, timezone.utc).date())

    async def _from_plausible(self, now: float) -> list[DailySeries]:
        """The site's days: one request for the site's visitors and page views, one (v2) for every
        goal.

        Each goes through the memo for Plausible's health and request count (it is Plausible's
        whether Plausible owns the snapshot or not), under a key holding the snapshot's time: asked
        afresh for every snapshot, so a snapshot is never made of a stale day series and its age
        is its data's."""
        client, load = self.plausible, self.context.load
        mine = [one for one in self.series if one.source == "plausible"]
        last = datetime.fromtimestamp(now, client.tz).date()
        first = last - timedelta(days=GATHERED_DAYS)
        span = (first.isoformat(), last.isoformat(), now)
        goals = sorted({one.goal for one in mine if one.goal})
        loads = [load(("plausible", "daily", *span), "plausible", lambda: client.daily(first, last, SITE_METRICS))]
        if goals:
            loads.append(load(("plausible", "daily_goals", *span, *goals), "plausible",
                              lambda: client.daily_goal_visitors(first, last, goals)))
        site, *by_goal = await gather_or_cancel(*loads)
        columns = {metric: [point.values[metric] for point in site.value] for metric in SITE_METRICS}
        goal_columns = by_goal[0].value if by_goal else {}
        values = {one.name: columns[one.metric] if one.metric else goal_columns[one.goal] for one in mine}
        return _since_first_data(values, first, data=list(columns.values()))


def _since_first_data(values: Mapping[str, Sequence[float]], first_day: date,
                      data: Sequence[Sequence[float]] | None = None) -> list[DailySeries]:
    """Each series from the first day with any data (any of ``data``, the series themselves by
    default); today, the last day, is still filling and is always kept."""
    columns = list(values.values()) if data is None else data
    complete = len(next(iter(values.values()), ())) - 1
    start = next((day for day in range(complete) if any(column[day] for column in columns)), max(complete, 0))
    return [DailySeries(name, first_day + timedelta(days=start), list(series[start:]))
            for name, series in values.items()]


def horizon(value: str) -> int:
    """The ``horizon`` parameter: a whole number of days, 1..30."""
    if not _HORIZON.fullmatch(value) or not 1 <= int(value) <= MAX_HORIZON_DAYS:
        raise ValueError(f"horizon must be a whole number of days from 1 to {MAX_HORIZON_DAYS} (got {value[:64]!r})")
    return int(value)


class _ForecastsArea(Area):
    """An area serving its part of the shared forecasts snapshot: every parameter set reads the
    same memo key, and :meth:`select` picks the part."""

    def __init__(self, context: Context, forecasts: Forecasts) -> None:
        super().__init__(context)
        self.forecasts = forecasts
        self.sources = forecasts.sources

    def key(self, params: dict[str, Any]) -> Hashable:
        return self.forecasts.key

    async def compute(self, params: dict[str, Any]) -> ForecastSet:
        return await self.forecasts.compute()

    def disabled_reason(self) -> str | None:
        return self.forecasts.disabled_reason()  # its sources are those that can run

    def peek_set(self) -> ForecastSet | None:
        """The shared snapshot as it is, without loading (what the collector reads)."""
        cached = self.context.peek(self.forecasts.key)
        return None if cached is None else cached.value


class ForecastArea(_ForecastsArea):
    name = "forecast"
    path = "/api/v1/forecast"
    result = Forecast
    title = "Forecast"

    def __init__(self, context: Context, forecasts: Forecasts) -> None:
        super().__init__(context, forecasts)
        names = forecasts.names
        self.query = {
            "series": Param(None, DEFAULT_SERIES, description="the tracked daily series: active_users, pageviews, "
                                                              "feature:<feature name>, funnel_entries:<funnel name>",
                            schema={"enum": names} if names else {}),
            "horizon": Param(None, DEFAULT_HORIZON, horizon, description="days to forecast, 1..30, starting today",
                             schema={"type": "integer", "minimum": 1, "maximum": MAX_HORIZON_DAYS,
                                     "default": int(DEFAULT_HORIZON)}),
        }

    def check(self, params: dict[str, Any]) -> None:
        names = self.forecasts.names
        if names and params["series"] not in names:  # without any, the area answers why (disabled)
            raise InvalidParameter("series", f"unknown series {params['series'][:64]!r}; tracked: {', '.join(names)}")

    def select(self, value: ForecastSet, params: dict[str, Any]) -> Forecast:
        return value.forecast(params["series"], params["horizon"])

    def peek(self, params: dict[str, Any]) -> Snapshot | None:
        try:
            return super().peek(params)
        except SourceError:  # the series' source failed this time: the section answers its error
            return None

    def metric_params(self) -> list[dict[str, Any]]:
        """The shared snapshot, as today's forecast of the first series: every parameter set reads
        the same snapshot, and the collector reads every series from it."""
        return [{"series": self.forecasts.names[0], "horizon": 1}] if self.forecasts.names else []


class AnomaliesArea(_ForecastsArea):
    name = "anomalies"
    path = "/api/v1/anomalies"
    result = AnomalyReport
    title = "Anomalies"
    query = {"time_range": time_range("30d", "the complete days to list flags for: those of the range's days "
                                             "(sub-day ranges: the days they touch), UTC")}

    def select(self, value: ForecastSet, params: dict[str, Any]) -> AnomalyReport:
        return value.anomalies(_first_day(params["time_range"], value.made_at))

    def metric_params(self) -> list[dict[str, Any]]:
        return []  # the anomaly metrics are the forecast area's: every series' last complete day


def _first_day(window: TimeRange, moment: float) -> date:
    return resolve(window, datetime.fromtimestamp(moment, timezone.utc), timezone.utc).first_day
