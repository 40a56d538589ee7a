"""Segment metrics (docs/metrics.md#segments) from the user-segments snapshot.

Segment names are the fixed behavioural segments, so the label set is bounded. A segment's size
is published even when it is empty (0 is a fact); its mean engagement only when it has members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from .base import AreaCollector, helptext

if TYPE_CHECKING:
    from ..areas.segments import SegmentsArea

SOURCE = "the identified events"


class SegmentsCollector(AreaCollector):
    area: "SegmentsArea"

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl = self.ttl
        size = GaugeMetricFamily(
            "analytics_segment_size",
            helptext("Users in the behavioural segment as of now (rules in /api/v1/user-segments).", SOURCE, ttl),
            labels=["segment_name"])
        engagement = GaugeMetricFamily(
            "analytics_segment_engagement",
            helptext("Mean engagement score of the segment's users, 0..100.", SOURCE, ttl), labels=["segment_name"])
        by_group = GaugeMetricFamily(
            "analytics_breakdown_segment_size",
            helptext("Users of one value of a dimension (metrics.breakdowns) in the behavioural segment; the largest "
                     "groups, then (other).", SOURCE, ttl), labels=["segment_name", "dimension", "value"])
        families = [size, engagement, by_group]
        if not with_samples:
            return families
        for _, body in self.published():
            breakdown = body.breakdown
            if breakdown is None:
                for segment in body.segments:
                    size.add_metric([segment.segment_name], segment.user_count)
                    if segment.avg_engagement is not None:
                        engagement.add_metric([segment.segment_name], segment.avg_engagement)
                continue
            for group in breakdown.groups:
                for segment in group.report.segments:
                    by_group.add_metric([segment.segment_name, breakdown.dimension, group.value], segment.user_count)
        return [family for family in families if family.samples]
