"""Funnel metrics (docs/metrics.md#funnels) from the funnel snapshots of every configured funnel and window.

Label values are configured funnel and step names, never data. A ``window`` label is added only
when more than one funnel window is configured (``metrics.funnel_windows``), so the default
setup keeps the documented label sets. An undefined number (nobody entered, nobody completed)
has no sample rather than a misleading zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from ..timeranges import window_label
from .base import AreaCollector, helptext

if TYPE_CHECKING:
    from ..areas.funnels import FunnelsArea

SOURCES = {"ordered_events": "the identified events", "aggregate_goals": "Plausible goal counts"}


class FunnelsCollector(AreaCollector):
    area: "FunnelsArea"

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl = self.ttl
        source = SOURCES[self.area.method]
        windowed = len(self.area.windows) > 1
        funnel_labels = ["funnel_name", "window"] if windowed else ["funnel_name"]
        step_labels = ["funnel_name", "step", "window"] if windowed else ["funnel_name", "step"]
        conversion = GaugeMetricFamily(
            "analytics_funnel_conversion_rate",
            helptext("Users who completed the funnel / users who entered it, 0..1.", source, ttl), labels=funnel_labels)
        step_rate = GaugeMetricFamily(
            "analytics_funnel_step_completion_rate",
            helptext("Users who went on from the step to the next / users who reached the step, 0..1 "
                     "(no series for the last step, which has no next).", source, ttl), labels=step_labels)
        drop_off = GaugeMetricFamily(
            "analytics_funnel_drop_off_rate",
            helptext("Users who reached the step but not the next / users who reached the step, 0..1.", source, ttl),
            labels=step_labels)
        users = GaugeMetricFamily(
            "analytics_funnel_step_users",
            helptext("Users who reached the step (entries in the window).", source, ttl), labels=step_labels)
        median = GaugeMetricFamily(
            "analytics_funnel_median_completion_seconds",
            helptext("Median time from the first step to the last, over users who completed the funnel.", source, ttl),
            labels=funnel_labels)
        by_group = GaugeMetricFamily(
            "analytics_breakdown_funnel_conversion_rate",
            helptext("Overall conversion of the users of one value of a dimension (metrics.breakdowns), 0..1; "
                     "the largest groups, then (other).", source, ttl),
            labels=["funnel_name", "dimension", "value", *(["window"] if windowed else [])])
        families = [conversion, step_rate, drop_off, users, median, by_group]
        if not with_samples:
            return families
        for params, body in self.published():
            window = [window_label(params["time_range"])] if windowed else []
            if body.breakdown is not None:
                for group in body.breakdown.groups:
                    _add(by_group, [body.funnel_name, body.breakdown.dimension, group.value, *window],
                         group.report.overall_conversion_rate)
                continue  # its whole is the plain section's, published from that one
            funnel = [body.funnel_name, *window]
            _add(conversion, funnel, body.overall_conversion_rate)
            _add(median, funnel, body.median_completion_time)
            for step in body.steps:
                labels = [body.funnel_name, step.step_name, *window]
                _add(step_rate, labels, step.completion_rate)
                _add(drop_off, labels, step.drop_off_rate)
                _add(users, labels, step.users_entered)
        return [family for family in families if family.samples]


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)
