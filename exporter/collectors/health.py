"""Service-health metrics: per-source status, timings and request counts, and build info."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .. import __version__
from ..health import REFRESH_BUCKETS, HealthRegistry


class HealthCollector:
    """Per-source state from the health registry, and the request budget of a refresh cycle.

    ``requests_per_cycle(source)`` is what one refresh of everything published costs;
    ``plausible_hourly()`` that cost per hour for Plausible (None when Plausible is disabled).
    """

    def __init__(self, health: HealthRegistry, requests_per_cycle: Callable[[str], int],
                 plausible_hourly: Callable[[], float | None]) -> None:
        self.health = health
        self.requests_per_cycle = requests_per_cycle
        self.plausible_hourly = plausible_hourly

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families())

    def _families(self) -> list[Metric]:
        up = GaugeMetricFamily("analytics_source_up", "1 if the last refresh of the source succeeded.",
                               labels=["source"])
        duration = GaugeMetricFamily("analytics_source_scrape_duration_seconds",
                                     "Duration of the last refresh of the source.", labels=["source"])
        last_success = GaugeMetricFamily("analytics_source_last_success_timestamp_seconds",
                                         "Unix time of the last successful refresh of the source.",
                                         labels=["source"])
        requests = CounterMetricFamily("analytics_source_requests", "Upstream requests by outcome.",
                                       labels=["source", "outcome"])
        refresh = HistogramMetricFamily("analytics_data_refresh_duration_seconds",
                                        "Durations of data refreshes per source.", labels=["source"])
        per_cycle = GaugeMetricFamily("analytics_source_requests_per_refresh_cycle",
                                      "Upstream requests one refresh of every cached query costs.",
                                      labels=["source"])
        budget = GaugeMetricFamily("analytics_plausible_projected_hourly_requests",
                                   "Plausible requests per hour at this TTL if every cached query is refreshed "
                                   "each cycle (plausible.io allows 600 per hour per team).")
        for name, state in self.health.sources.items():
            if not state.enabled:
                continue
            up.add_metric([name], 1.0 if state.status == "up" else 0.0)
            if state.last_refresh_seconds is not None:
                duration.add_metric([name], state.last_refresh_seconds)
            if state.last_success is not None:
                last_success.add_metric([name], state.last_success)
            for outcome, count in sorted(state.requests.items()):
                requests.add_metric([name, outcome], count)
            buckets = [(repr(bound), count) for bound, count in zip(REFRESH_BUCKETS, state.refresh_bucket_counts)]
            buckets.append(("+Inf", state.refresh_count))  # the health registry keeps counts cumulative
            refresh.add_metric([name], buckets, state.refresh_sum)
            per_cycle.add_metric([name], self.requests_per_cycle(name))
        hourly = self.plausible_hourly()
        if hourly is not None:
            budget.add_metric([], hourly)
        info = GaugeMetricFamily("analytics_build_info", "Build information.", labels=["version"])
        info.add_metric([__version__], 1.0)
        return [up, duration, last_success, requests, refresh, per_cycle, budget, info]
