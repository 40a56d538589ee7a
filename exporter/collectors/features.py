"""Feature metrics (docs/metrics.md#features) from the feature-adoption snapshots of each configured window.

Windowed values (adoption rate, unique users) carry a ``window`` label; the all-time usage
counter and the weekly trend do not depend on the window and come from the first snapshot
present. Label values are configured feature names, never data. A feature that cannot be
observed (unknown goal, no source) has no series rather than a misleading zero.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..timeranges import window_label
from .base import AreaCollector, helptext

TRENDS = ("up", "down", "stable", "insufficient_data")


class FeaturesCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl, source = self.ttl, "Plausible goals"
        snapshots = [(window_label(params["time_range"]), body)
                     for params, body in (self.published() if with_samples else [])]
        identified = bool(snapshots) and snapshots[0][1].basis == "identified_users"
        users_text, users_source = (("Unique identified users of the feature in the window.",
                                     "the identified events source") if identified else
                                    ("Unique users of the feature in the window (Plausible's daily-salted visitors).",
                                     source))
        rate = GaugeMetricFamily(
            "analytics_feature_adoption_rate",
            helptext("Unique users of the feature / active users in the window, 0..1.", source, ttl),
            labels=["feature_name", "window"])
        users = GaugeMetricFamily(
            "analytics_feature_unique_users",
            helptext(users_text, users_source, ttl),
            labels=["feature_name", "window"])
        usage = CounterMetricFamily(
            "analytics_feature_usage",
            helptext("All-time uses (goal completions) of the feature.", source, ttl),
            labels=["feature_name"])
        trend = GaugeMetricFamily(
            "analytics_feature_trend",
            helptext("1 for the feature's current trend over the last whole weeks (Mann-Kendall + Theil-Sen), "
                     "0 for the others.", source, ttl),
            labels=["feature_name", "trend"])
        families = [rate, users, usage, trend]
        if not with_samples:
            return families
        for label, body in snapshots:
            for feature in body.features:
                if feature.adoption_rate is not None:
                    rate.add_metric([feature.feature_name, label], feature.adoption_rate)
                if feature.unique_users is not None:
                    users.add_metric([feature.feature_name, label], feature.unique_users)
        if snapshots:
            for feature in snapshots[0][1].features:
                if feature.all_time_uses is None:
                    continue  # not observable: its trend is no evidence either
                usage.add_metric([feature.feature_name], feature.all_time_uses)
                for state in TRENDS:
                    trend.add_metric([feature.feature_name, state], 1.0 if feature.trend == state else 0.0)
        return [family for family in families if family.samples]
