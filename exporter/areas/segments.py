"""User segments: behavioural segments and engagement from the identified events (docs/api.md#user-segments).

Segments are defined as of now over fixed windows (28 and 56 days of activity, 90 days of gaps;
docs/methods.md#segments-and-engagement), so the ``time_range`` parameter does not change them:
every range shares one snapshot, and the body says so. A feature, for the breadth measure, is a
configured feature that names an event (``features[].event``); with none configured, every
meaningful event name counts as a feature of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Hashable
from typing import Any

from ..analysis.segments import UserSegments, segments_report
from ..config import FeatureConfig, SegmentsConfig
from ..events.backend import EventsBackend
from ..timeranges import TimeRange
from .base import Area, Context
from .params import time_range

TIME_RANGE_NOTE = ("segments are computed as of now over fixed windows (see definitions); time_range does not "
                   "change them")


class SegmentsArea(Area):
    name = "user_segments"
    path = "/api/v1/user-segments"
    result = UserSegments
    title = "User segments"
    sources = ("events",)
    query = {"time_range": time_range("30d", "accepted for symmetry with the other sections; segments are computed "
                                             "as of now over fixed windows and do not depend on it")}

    def __init__(self, context: Context, events: EventsBackend | None, settings: SegmentsConfig,
                 features: tuple[FeatureConfig, ...]) -> None:
        super().__init__(context)
        self.events = events
        self.settings = settings
        self.feature_events = {f.event: f.name for f in features if f.event} or None

    async def compute(self, params: dict[str, Any]) -> UserSegments:
        settings = self.settings
        now = int(self.context.clock())
        activity = await self.events.segment_activity(
            now=now, meaningful_events=settings.meaningful_events, feature_events=self.feature_events)
        # Rules, scores and medians over every user: a while on millions, so off the event loop.
        report = await asyncio.to_thread(segments_report, activity, now=now, thresholds=settings.thresholds,
                                         meaningful_events=settings.meaningful_events,
                                         feature_events=self.feature_events)
        return dataclasses.replace(report, time_range_note=TIME_RANGE_NOTE)

    def key(self, params: dict[str, Any]) -> Hashable:
        return ("area", self.name)  # one snapshot whatever the time_range (see the module docstring)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D30}]
