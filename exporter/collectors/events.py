"""Events-source metrics: the malformed lines of the last good read of the events file.

Rendered with the service-health families on every scrape: it reads one number the source
already holds, and it changes when the file is re-read, not when a snapshot does.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..events.file_source import EventsFileSource


class EventsCollector:
    def __init__(self, events: EventsFileSource | None) -> None:
        self.events = events  # only a file has lines to skip; ClickHouse rows are typed

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=False))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=True))

    def _families(self, with_samples: bool) -> list[Metric]:
        malformed = GaugeMetricFamily(
            "analytics_events_malformed_lines",
            "Lines of the events file skipped as malformed at its last successful read (see /health and the log).")
        if not with_samples:
            return [malformed]
        snapshot = None if self.events is None else self.events.snapshot
        if snapshot is not None:
            malformed.add_metric([], snapshot.malformed_lines)
        return [malformed] if malformed.samples else []
