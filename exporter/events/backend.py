"""The questions the areas ask the identified events source, whatever holds the events.

Two backends answer them: the file (:class:`~exporter.events.file_source.EventsFileSource`: the
events in memory, analysed with numpy) and ClickHouse
(:class:`~exporter.events.clickhouse_source.ClickHouseEventsSource`: the heavy work pushed down, only
small results brought back). Each answer is what the pure report code takes, and on the same
events both backends give the same numbers. Times are epoch seconds; ranges are ``[start, end)``.
Every call is health-tracked as source ``events`` and raises
:class:`~exporter.errors.SourceError` when the events cannot be read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from ..analysis.adoption import FeatureUsers
from ..analysis.breakdowns import EVERYONE, Selection
from ..analysis.experiments.event_metrics import ExperimentMetricsSettings, ExposureSums
from ..analysis.funnels import FunnelDefinition, FunnelProgress
from ..analysis.retention import (
    IntervalGrid,
    LifecycleCounts,
    RetentionCounts,
    RetentionQuery,
    StickinessCounts,
)
from ..analysis.segments import UserActivity
from ..analysis.usage import DailyUsers, UserCounts


class EventsBackend(Protocol):
    """Every question takes a :class:`~exporter.analysis.breakdowns.Selection`: the users it keeps
    (filters) and the dimension to break down by, each user's value read as of the question's end
    (the range end, or ``now``). With a breakdown, per-user answers carry each user's value code
    (``groups``, into ``values``) and count answers a leading axis over the values."""

    kind: str  # "file" or "clickhouse", as configured (events.kind)

    async def funnel_reach(self, funnel: FunnelDefinition, *, range_start: int, range_end: int,
                           selection: Selection = EVERYONE) -> FunnelProgress:
        """How far the users entering ``funnel`` in ``[range_start, range_end)`` got, and how fast."""

    async def segment_activity(self, *, now: int, meaningful_events: Collection[str] | None = None,
                               feature_events: Mapping[str, str] | None = None,
                               selection: Selection = EVERYONE) -> UserActivity:
        """The segment measures of every user active at least once up to ``now``."""

    async def user_counts(self, *, start: int, end: int, meaningful_events: Collection[str] | None = None,
                          selection: Selection = EVERYONE) -> UserCounts:
        """Users seen before ``end``, and users with a meaningful event in ``[start, end)``."""

    async def feature_users(self, event_names: Collection[str], *, start: int, end: int,
                            selection: Selection = EVERYONE) -> FeatureUsers:
        """Distinct users per event name in ``[start, end)`` (0 for a name without events), per
        value with a breakdown."""

    async def feature_dates(self, event_names: Collection[str], *, end: int) -> dict[str, tuple[int, int] | None]:
        """First and last time of each event name before ``end`` (None for a name without events)."""

    async def daily_users(self, event_names: Collection[str], *, start: int, end: int,
                          meaningful_events: Collection[str] | None = None) -> DailyUsers:
        """Distinct users per UTC day of ``[start, end)`` (``start`` a UTC midnight; the last day may
        be partial): with a meaningful event, and with each of ``event_names``."""

    async def retention_counts(self, query: RetentionQuery, grid: IntervalGrid,
                               selection: Selection = EVERYONE) -> RetentionCounts:
        """Cohort sizes and retained users per (cohort, period) of ``query`` over ``grid``."""

    async def lifecycle_counts(self, grid: IntervalGrid, selection: Selection = EVERYONE) -> LifecycleCounts:
        """New, returning, resurrecting and dormant users per interval of ``grid``."""

    async def stickiness_counts(self, *, now: int, selection: Selection = EVERYONE) -> StickinessCounts:
        """Distinct active users per day, week and month of the 28 complete days before ``now``."""

    async def exposure_sums(self, settings: ExperimentMetricsSettings, *, end: int,
                            experiment_keys: Mapping[str, str] | None = None) -> ExposureSums:
        """Every experiment found in exposure events before ``end`` (an experiment label mapped to
        its key by ``experiment_keys``): who was counted, and per metric and variant the sums of the
        per-user measures (docs/experiment-metrics.md#sufficient-statistics)."""

    def details(self) -> dict[str, Any]:
        """Facts about the backend for ``/health``."""
