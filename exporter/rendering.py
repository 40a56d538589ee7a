"""Rendering ``/metrics``: analytics families once per refresh, health families per scrape.

Rendering costs about 1 ms per 200 samples, so the analytics families (which only change when a
snapshot does) are rendered once per snapshot generation and encoding, and the bytes reused. The
service-health families are few and change with every request counted, so they are rendered on
each scrape and appended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Hashable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .collectors.events import EventsCollector
from .collectors.health import HealthCollector

if TYPE_CHECKING:
    from .service import AnalyticsService

OPENMETRICS_EOF = b"# EOF\n"


class MetricsRenderer:
    def __init__(self, service: "AnalyticsService") -> None:
        self.service = service
        self.analytics = CollectorRegistry(auto_describe=True)
        for area in service.areas.values():
            self.analytics.register(area.collector())
        self.health = CollectorRegistry(auto_describe=True)
        self.health.register(HealthCollector(service))
        self.health.register(EventsCollector(service))
        self._rendered: dict[str, tuple[Hashable, bytes]] = {}
        self.analytics_renders = 0  # how often the analytics families were rendered (for tests/bench)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        generation = self._generation()
        cached = self._rendered.get(content_type)
        if cached is None or cached[0] != generation:
            cached = (generation, encoder(self.analytics))
            self._rendered[content_type] = cached
            self.analytics_renders += 1
        analytics = cached[1]
        if analytics.endswith(OPENMETRICS_EOF):  # one EOF marker, at the very end
            analytics = analytics[: -len(OPENMETRICS_EOF)]
        return analytics + encoder(self.health), content_type

    def _generation(self) -> Hashable:
        """Identifies the set of snapshots on show: changes when any is refreshed or dropped."""
        parts = []
        for area in self.service.areas.values():
            for params in area.metric_params():
                section = area.peek(params)
                parts.append((area.name, area.key(params), None if section is None else section.generated_at))
        return tuple(parts)
