"""What every analytics area has in common: memoized snapshots and their JSON form.

An area (usage, features, experiments, ...) turns source data into one analysed **snapshot** per
parameter set. The snapshot is memoized by the service for the TTL; the area's collector and its
JSON endpoint both read that same snapshot, so ``/metrics`` and ``/api/v1/*`` cannot disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Hashable

from ..cache import Cached
from ..errors import SourceDisabled
from ..timeranges import iso_z

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from ..service import AnalyticsService


@dataclass(frozen=True)
class Section:
    """An analysed snapshot as served: the body plus when it was made and from what."""

    body: dict[str, Any]
    time_range: str | None
    generated_at: float
    stale: bool
    sources: tuple[str, ...]

    @property
    def generated_at_iso(self) -> str:
        return iso_z(datetime.fromtimestamp(self.generated_at, timezone.utc))

    def to_json(self, service: "AnalyticsService") -> dict[str, Any]:
        header = {"time_range": self.time_range, "generated_at": self.generated_at_iso,
                  "sources": {name: service.health.summary(name) for name in self.sources}}
        if self.stale:
            header["stale"] = True
        return header | self.body


class Area(ABC):
    """One analytics area. Subclasses say which sources they read and how to compute a body."""

    name: str  # the section's key in the dashboard object
    sources: tuple[str, ...]  # sources it reads; the first one owns the refresh metrics

    def __init__(self, service: "AnalyticsService") -> None:
        self.service = service

    @abstractmethod
    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        """Fetch (through the service's memo) and analyse: the section body for ``params``."""

    @abstractmethod
    def metric_params(self) -> list[dict[str, Any]]:
        """The parameter sets whose snapshots ``/metrics`` publishes."""

    @abstractmethod
    def collector(self) -> "Collector":
        """The prometheus collector that renders this area's snapshots."""

    def disabled_reason(self) -> str | None:
        reasons = [self.service.health.sources[s].disabled_reason for s in self.sources]
        return next((r for r in reasons if r), None)

    async def section(self, params: dict[str, Any]) -> Section:
        reason = self.disabled_reason()
        if reason:
            raise SourceDisabled(self.sources[0], reason)
        cached = await self.service.load(self.key(params), self.sources[0], lambda: self.compute(params))
        return self._as_section(cached, params)

    def peek(self, params: dict[str, Any]) -> Section | None:
        """The current snapshot without fetching (what collectors use); None when absent."""
        cached = self.service.memo.peek(self.key(params))
        return None if cached is None else self._as_section(cached, params)

    def fresh(self, params: dict[str, Any]) -> Section | None:
        """The current snapshot if it is within its TTL (asking would not refresh it); else None."""
        section = self.peek(params)
        return None if section is None or section.stale else section

    def key(self, params: dict[str, Any]) -> Hashable:
        return ("area", self.name, tuple(sorted(params.items())))

    def _as_section(self, cached: Cached[dict[str, Any]], params: dict[str, Any]) -> Section:
        time_range = params.get("time_range")
        return Section(cached.value, getattr(time_range, "value", time_range), cached.fetched_at,
                       cached.stale, self.sources)
