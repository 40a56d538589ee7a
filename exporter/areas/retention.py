"""Retention cohorts, and the lifecycle with stickiness, from the identified events.

(docs/retention.md, docs/api.md)

Both count by UTC calendar days or ISO weeks over the requested range; the backends do the
counting (numpy over the log in memory, or SQL on ClickHouse) and the reports are made here. An
interval starting in the range and still in progress is listed, marked incomplete. Both take
``filter=`` and ``breakdown=`` (docs/api.md#filters-and-breakdowns): the backends count per value
of the dimension, and a group of several values (``(other)``) sums their counts, which is exact
because every user has one value.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from ..analysis.breakdowns import everyone_of, merged_rows, rows_of_values
from ..analysis.retention import (
    INTERVALS,
    MODES,
    IntervalGrid,
    LifecycleCounts,
    LifecycleGroup,
    LifecycleSection,
    RangeTooShort,
    RetentionGroup,
    RetentionQuery,
    RetentionSection,
    StickinessCounts,
    interval_grid,
    lifecycle_report,
    retention_report,
)
from ..concurrency import gather_or_cancel
from ..events.backend import EventsBackend
from ..results import with_fields
from ..timeranges import TimeRange, resolve
from .base import Area, Context
from .drilldown import Drilldown
from .params import InvalidParameter, Param, text, time_range

INTERVAL_DESCRIPTION = "day: UTC calendar days; week: ISO weeks from Monday 00:00 UTC"


class _IntervalArea(Area):
    """An area counting over the intervals of its range (shared by retention and lifecycle)."""

    sources = ("events",)
    own_query: dict[str, Param]  # the area's parameters besides the drill-down's

    def __init__(self, context: Context, events: EventsBackend | None, drilldown: Drilldown) -> None:
        super().__init__(context)
        self.events = events
        self.drilldown = drilldown
        self.query = {**self.own_query, **drilldown.query}

    def check(self, params: dict[str, Any]) -> None:
        self.drilldown.check(params)
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
    result = RetentionSection
    title = "Retention"
    own_query = {
        "time_range": time_range("90d"),
        "interval": Param(INTERVALS, "week", description=INTERVAL_DESCRIPTION),
        "mode": Param(MODES, "first_time", description="first_time: a user's cohort is the interval of their "
                                                       "first-ever start event; recurring: every interval with one"),
        "start_event": Param(None, None, text, description="the event that puts a user in a cohort (default: any)"),
        "return_event": Param(None, None, text, description="the event that counts as coming back (default: any)"),
    }

    async def compute(self, params: dict[str, Any]) -> RetentionSection:
        grid = self.grid(params)
        query = RetentionQuery(params["mode"], params.get("start_event"), params.get("return_event"))
        counts = await self.events.retention_counts(query, grid, self.drilldown.selection(params))
        breakdown = None
        if "breakdown" in params:
            breakdown = self.drilldown.breakdown(
                params, counts.values, counts.users.tolist(), RetentionGroup,
                lambda codes: retention_report(query, grid, merged_rows(counts, codes)))
        return with_fields(retention_report(query, grid, everyone_of(counts)), RetentionSection,
                           filters=self.drilldown.filters(params), breakdown=breakdown)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D90, "interval": "week", "mode": "first_time"}]


class LifecycleArea(_IntervalArea):
    name = "lifecycle"
    path = "/api/v1/lifecycle"
    result = LifecycleSection
    title = "Lifecycle and stickiness"
    own_query = {"time_range": time_range("30d"), "interval": Param(INTERVALS, "day", description=INTERVAL_DESCRIPTION)}

    async def compute(self, params: dict[str, Any]) -> LifecycleSection:
        grid = self.grid(params)
        selection = self.drilldown.selection(params)
        counts, stickiness = await gather_or_cancel(
            self.events.lifecycle_counts(grid, selection),
            self.events.stickiness_counts(now=int(self.context.clock()), selection=selection))
        breakdown = None
        if "breakdown" in params:
            breakdown = self.drilldown.breakdown(params, counts.values, counts.users.tolist(), LifecycleGroup,
                                                 lambda codes: _lifecycle_of(grid, counts, stickiness, codes))
        return with_fields(lifecycle_report(grid, everyone_of(counts), everyone_of(stickiness)), LifecycleSection,
                           filters=self.drilldown.filters(params), breakdown=breakdown)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D30, "interval": interval} for interval in INTERVALS]


def _lifecycle_of(grid: IntervalGrid, counts: LifecycleCounts, stickiness: StickinessCounts,
                  codes: tuple[int, ...]):
    """The lifecycle of the users of ``counts``' values ``codes``. Stickiness is counted as of now,
    so its values may differ from the range's (a user's latest value can change after the range
    ends): its rows are found by value."""
    sticky_rows = rows_of_values(stickiness, [counts.values[code] for code in codes])
    return lifecycle_report(grid, merged_rows(counts, codes), merged_rows(stickiness, sticky_rows))
