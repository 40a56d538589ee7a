"""User segments: behavioural segments and engagement from the identified events (docs/api.md#user-segments).

Segments are defined as of now over fixed windows (28 and 56 days of activity, 90 days of gaps;
docs/methods.md#segments-and-engagement), so the ``time_range`` parameter does not change them:
every range shares one snapshot, and the body says so. ``filter=`` and ``breakdown=`` segment the
users they select (docs/api.md#filters-and-breakdowns). A feature, for the breadth measure, is a
configured feature that names an event (``features[].event``); with none configured, every
meaningful event name counts as a feature of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import numpy as np

from ..analysis.segments import SegmentGroup, SegmentsSection, UserActivity, segments_report
from ..config import FeatureConfig, SegmentsConfig
from ..events.backend import EventsBackend
from ..results import with_fields
from ..timeranges import TimeRange
from .base import Area, Context
from .drilldown import Drilldown
from .params import time_range

TIME_RANGE_NOTE = ("segments are computed as of now over fixed windows (see definitions); time_range does not "
                   "change them")


class SegmentsArea(Area):
    name = "user_segments"
    path = "/api/v1/user-segments"
    result = SegmentsSection
    title = "User segments"
    sources = ("events",)

    def __init__(self, context: Context, events: EventsBackend | None, settings: SegmentsConfig,
                 features: tuple[FeatureConfig, ...], drilldown: Drilldown) -> None:
        super().__init__(context)
        self.events = events
        self.settings = settings
        self.feature_events = {f.event: f.name for f in features if f.event} or None
        self.drilldown = drilldown
        self.query = {"time_range": time_range("30d", "accepted for symmetry with the other sections; segments are "
                                                      "computed as of now over fixed windows and do not depend on it"),
                      **drilldown.query}

    async def compute(self, params: dict[str, Any]) -> SegmentsSection:
        settings = self.settings
        now = int(self.context.clock())
        activity = await self.events.segment_activity(
            now=now, meaningful_events=settings.meaningful_events, feature_events=self.feature_events,
            selection=self.drilldown.selection(params))
        # Rules, scores and medians over every user: a while on millions, so off the event loop.
        return await asyncio.to_thread(self._section, activity, params, now)

    def _section(self, activity: UserActivity, params: dict[str, Any], now: int) -> SegmentsSection:
        settings = self.settings

        def report(of: UserActivity):
            return segments_report(of, now=now, thresholds=settings.thresholds,
                                   meaningful_events=settings.meaningful_events, feature_events=self.feature_events)

        breakdown = None
        if activity.groups is not None:
            users = np.bincount(activity.groups, minlength=len(activity.values))
            groups = self.drilldown.groups(activity.values, users)
            parts = activity.split(groups.group_of_value(len(activity.values))[activity.groups], len(groups.labels))
            part_of = dict(zip(groups.members, parts))
            breakdown = self.drilldown.breakdown(params, activity.values, users, SegmentGroup,
                                                 lambda codes: report(part_of[codes]))
        return with_fields(report(activity), SegmentsSection, time_range_note=TIME_RANGE_NOTE,
                           filters=self.drilldown.filters(params), breakdown=breakdown)

    def key(self, params: dict[str, Any]) -> Hashable:
        # One snapshot whatever the time_range (see the module docstring).
        return ("area", self.name, tuple(sorted((name, value) for name, value in params.items()
                                                if name != "time_range")))

    def metric_params(self) -> list[dict[str, Any]]:
        return self.drilldown.with_published([{"time_range": TimeRange.D30}])
