"""User segments: behavioural segments and engagement from the identified events (contract §4.4).

Segments are defined as of now over fixed windows (28 and 56 days of activity, 90 days of gaps;
methods.md section 3), so the ``time_range`` parameter does not change them: every range shares
one snapshot, and the body says so. A feature, for the breadth measure, is a configured feature
that names an event (``features[].event``); with none configured, every meaningful event name
counts as a feature of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Hashable

from ..analysis.segments import segments_report
from ..collectors.segments import SegmentsCollector
from ..timeranges import TimeRange
from .base import Area

TIME_RANGE_NOTE = ("segments are computed as of now over fixed windows (see definitions); time_range does not "
                   "change them")


class SegmentsArea(Area):
    name = "user_segments"
    sources = ("events",)

    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        settings = self.service.config.segments
        feature_events = {f.event: f.name for f in self.service.config.features if f.event} or None
        now = int(self.service.clock())
        activity = await self.service.events.segment_activity(
            now=now, meaningful_events=settings.meaningful_events, feature_events=feature_events)
        # Rules, scores and medians over every user: a while on millions, so off the event loop.
        body = await asyncio.to_thread(segments_report, activity, now=now, thresholds=settings.thresholds,
                                       meaningful_events=settings.meaningful_events, feature_events=feature_events)
        body["time_range_note"] = TIME_RANGE_NOTE
        return body

    def key(self, params: dict[str, Any]) -> Hashable:
        return ("area", self.name)  # one snapshot whatever the time_range (see the module docstring)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": TimeRange.D30}]

    def collector(self) -> SegmentsCollector:
        return SegmentsCollector(self)
