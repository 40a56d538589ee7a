"""Rendering ``/metrics``: analytics families once per refresh, health families when they change.

Rendering costs about 1 ms per 200 samples, so the analytics families (which only change when a
snapshot does) are rendered once per snapshot generation and encoding, and the bytes reused. The
service-health families are few and change with every request counted, so they are rendered
again whenever a scrape cannot reuse the last response.

A scrape reuses the last response of its encoding as is -- no refresh, no rendering -- while
nothing it shows can have changed: every published snapshot was fresh when it was rendered, no
value has been stored in or dropped from the memo since, no health change or report sent has been
recorded, and no value has reached its TTL or hard limit yet. That is every scrape between two refreshes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .collectors import analytics_collectors, health_collectors

if TYPE_CHECKING:
    from .service import AnalyticsService

OPENMETRICS_EOF = b"# EOF\n"


@dataclass(frozen=True)
class _Response:
    """A rendered response and the state it showed."""

    body: bytes
    memo_revision: int
    health_revision: int
    reports_revision: int
    valid_until: float  # memo clock time at which a value turns stale or is dropped


class MetricsRenderer:
    def __init__(self, service: "AnalyticsService") -> None:
        self.service = service
        self.analytics = _registry(analytics_collectors(service.areas, service.config.cache.ttl_seconds))
        self.health = _registry(health_collectors(service.health, service.events, service.requests_per_cycle,
                                                  service.plausible_hourly_requests, service.report_outcomes))
        self._rendered: dict[str, tuple[Hashable, bytes]] = {}
        self._responses: dict[str, _Response] = {}  # per content type: the last reusable response
        self.analytics_renders = 0  # how often the analytics families were rendered (for tests/bench)
        self.health_renders = 0  # how often the health families were rendered (for tests/bench)

    def reusable(self, accept: str | None) -> tuple[bytes, str] | None:
        """The last response in the encoding ``accept`` asks for, if it is still exactly what a
        refresh and a render would produce now (see the module docstring); else None."""
        _, content_type = choose_encoder(accept or "")
        kept = self._responses.get(content_type)
        service = self.service
        if (kept is None or kept.memo_revision != service.memo.revision
                or kept.health_revision != service.health.revision
                or kept.reports_revision != service.report_outcomes.revision
                or service.memo.clock() >= kept.valid_until):
            return None
        return kept.body, content_type

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
        body = analytics + encoder(self.health)
        self.health_renders += 1
        self._keep(content_type, body)
        return body, content_type

    def _keep(self, content_type: str, body: bytes) -> None:
        """Remember ``body`` for reuse if every published snapshot is fresh; forget it otherwise
        (a missing or stale snapshot needs the next scrape to refresh it)."""
        service = self.service
        if not service.published_snapshots_fresh():
            self._responses.pop(content_type, None)
            return
        self._responses[content_type] = _Response(body, service.memo.revision, service.health.revision,
                                                  service.report_outcomes.revision, service.memo.next_change_at())

    def _generation(self) -> Hashable:
        """Identifies the set of snapshots on show: changes when any is refreshed or dropped."""
        parts = []
        for area in self.service.areas.values():
            for params in area.metric_params():
                section = area.peek(params)
                parts.append((area.name, area.key(params), None if section is None else section.generated_at))
        return tuple(parts)


def _registry(collectors: list) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry
