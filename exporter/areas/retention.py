"""Retention cohorts, and the lifecycle with stickiness, from the identified events.

(docs/retention.md, docs/api.md)

Both count by UTC calendar days or ISO weeks over the requested range; the backends do the
counting (numpy over the log in memory, or SQL on ClickHouse) and the reports are made here. An
interval starting in the range and still in progress is listed, marked incomplete.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from ..analysis.retention import (
    INTERVALS,
    MODES,
    IntervalGrid,
    LifecycleReport,
    RangeTooShort,
    RetentionQuery,
    RetentionReport,
    interval_grid,
    lifecycle_report,
    retention_report,
)
from ..concurrency import gather_or_cancel
from ..events.backend import EventsBackend
from ..timeranges import TimeRange, resolve
from .base import Area, Context
from .params import InvalidParameter, Param, text, time_range

INTERVAL_DESCRIPTION = "day: UTC calendar days; week: ISO weeks from Monday 00:00 UTC"


class _IntervalArea(Area):
    """An area counting over the intervals of its range (shared by retention and lifecycle)."""

    sources = ("events",)

    def __init__(self, context: Context, events: EventsBackend | None) -> None:
        super().__init__(context)
        self.events = events

    def check(self, params: dict[str, Any]) -> None:
        self.grid(params)

    def grid(self, params: dict[str, Any]) -> IntervalGrid:
        """The intervals starting in the range; events are read up to now (a clock running ahead
        stamps none later)."""
        now = self.context.clock()
        window = resolve(params["time_range"], datetime.fromtimestamp(now, timezone.utc), timezone.utc)
        try:
            grid = interval_grid(params["interval"], range_start=int(window.start.timestamp()),
                                 range_end=int(window.end.timestamp()), now=int(now))
        except RangeTooShort as error:
            raise InvalidParameter("time_range", str(error)) from None
        return dataclasses.replace(grid, end=min(grid.end, int(now) + 1))


class RetentionArea(_IntervalArea):
    name = "retention"
    path = "/api/v1/retention"
    result = RetentionReport
    title = "Retention"
    query = {
        "time_range": time_range("90d"),
        "interval": Param(INTERVALS, "week", description=INTERVAL_DESCRIPTION),
        "mode": Param(MODES, "first_time", description="first_time: a user's cohort is the interval of their "
                                                       "first-ever start event; recurring: every interval with one"),
        "start_event": Param(None, None, text, description="the event that puts a user in a cohort (default: any)"),
        "return_event": Param(None, None, text, description="the event that counts as coming back (default: any)"),
    }

    async def compute(self, params: dict[str, Any]) -> RetentionReport:
        grid = self.grid(params)
        query = RetentionQuery(params["mode"], params.get("start_event"), params.get("return_event"))
        return retention_report(query, grid, await self.events.retention_counts(query, grid))

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D90, "interval": "week", "mode": "first_time"}]


class LifecycleArea(_IntervalArea):
    name = "lifecycle"
    path = "/api/v1/lifecycle"
    result = LifecycleReport
    title = "Lifecycle and stickiness"
    query = {"time_range": time_range("30d"), "interval": Param(INTERVALS, "day", description=INTERVAL_DESCRIPTION)}

    async def compute(self, params: dict[str, Any]) -> LifecycleReport:
        grid = self.grid(params)
        counts, stickiness = await gather_or_cancel(self.events.lifecycle_counts(grid),
                                                    self.events.stickiness_counts(now=int(self.context.clock())))
        return lifecycle_report(grid, counts, stickiness)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D30, "interval": interval} for interval in INTERVALS]
