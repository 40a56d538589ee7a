"""Usage metrics (docs/metrics.md#usage) from the usage-trends snapshots of each configured window."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..timeranges import window_label
from .base import AreaCollector, helptext

# Where the user counts come from, by the snapshot's ``basis`` (HELP names the real source).
USER_COUNT_SOURCE = {"identified_users": "the identified events source", "plausible_visitors": "Plausible"}
WINDOWED = (
    ("analytics_unique_visitors", "unique_visitors", "Unique visitors in the window (Plausible's daily-salted count)."),
    ("analytics_avg_session_duration_seconds", "avg_session_duration", "Mean visit duration in the window."),
    ("analytics_bounce_rate_percentage", "bounce_rate", "Share of single-page visits in the window, 0..100."),
)


class UsageCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl, source = self.ttl, "Plausible"
        snapshots = [(window_label(params["time_range"]), body)
                     for params, body in (self.published() if with_samples else [])]
        broken_down = [(label, body) for label, body in snapshots if body.breakdown is not None]
        snapshots = [(label, body) for label, body in snapshots if body.breakdown is None]
        windowed = {name: GaugeMetricFamily(name, helptext(text, source, ttl), labels=["window"])
                    for name, _, text in WINDOWED}
        basis = snapshots[0][1].basis if snapshots else None
        users_source = USER_COUNT_SOURCE.get(basis, "Plausible or the identified events source")
        active = GaugeMetricFamily("analytics_active_users",
                                   helptext("Unique active users in the window.", users_source, ttl), labels=["window"])
        total = GaugeMetricFamily("analytics_total_users", helptext("Users ever seen.", users_source, ttl))
        by_group = GaugeMetricFamily(
            "analytics_breakdown_active_users",
            helptext("Unique active users in the window of one value of a dimension (metrics.breakdowns); the largest "
                     "groups, then (other).", USER_COUNT_SOURCE["identified_users"], ttl),
            labels=["window", "dimension", "value"])
        for label, body in broken_down:
            for group in body.breakdown.groups:
                by_group.add_metric([label, body.breakdown.dimension, group.value], group.users)
        pageviews = CounterMetricFamily("analytics_page_views", helptext("All-time pageviews.", source, ttl))
        current = GaugeMetricFamily("analytics_current_visitors",
                                    helptext("Visitors in the last 5 minutes.", source, ttl))
        for label, body in snapshots:
            active.add_metric([label], body.active_users)
            for name, field, _ in WINDOWED:
                if getattr(body, field) is not None:
                    windowed[name].add_metric([label], getattr(body, field))
        if snapshots:
            body = snapshots[0][1]
            total.add_metric([], body.total_users)
            pageviews.add_metric([], body.page_views_all_time)
            current.add_metric([], body.current_visitors)
        families = [total, active, *windowed.values(), pageviews, current, by_group]
        return [f for f in families if f.samples] if with_samples else families
