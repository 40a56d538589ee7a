"""Report metrics: when each scheduled report was last sent.

Rendered with the service-health families on every scrape that cannot reuse the last response:
it reads a number per configured report, which changes when a report is sent, not when a
snapshot does.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..reports.outcomes import ReportOutcomes


class ReportsCollector:
    def __init__(self, outcomes: ReportOutcomes) -> None:
        self.outcomes = outcomes

    def describe(self) -> Iterator[Metric]:
        return iter([self._family()])

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for report, at in sorted(self.outcomes.last_success.items()):
            family.add_metric([report], at)
        return iter([family] if family.samples else [])

    @staticmethod
    def _family() -> GaugeMetricFamily:
        # Label values are the configured reports' names: bounded by the configuration.
        return GaugeMetricFamily(
            "analytics_report_last_success_timestamp_seconds",
            "Unix time this process last sent the scheduled report (the SMTP server accepted it); absent until "
            "then.", labels=["report"])
