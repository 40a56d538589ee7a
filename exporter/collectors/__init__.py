"""Every collector, wired in one place, each given only what it reads.

The analytics collectors read one area's snapshots each and are rendered once per snapshot
generation; the service-health collectors read the health registry and the events file and are
rendered per scrape (see ``exporter/rendering.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client.registry import Collector

from ..areas.base import Area
from ..events.backend import EventsBackend
from ..events.file_source import EventsFileSource
from ..health import HealthRegistry
from ..reports.outcomes import ReportOutcomes
from .events import EventsCollector
from .experiments import ExperimentsCollector
from .features import FeaturesCollector
from .feedback import FeedbackCollector
from .forecasts import ForecastsCollector
from .funnels import FunnelsCollector
from .health import HealthCollector
from .reports import ReportsCollector
from .retention import LifecycleCollector, RetentionCollector
from .segments import SegmentsCollector
from .usage import UsageCollector


def analytics_collectors(areas: Mapping[str, Area], ttl: float) -> list[Collector]:
    """A collector per area, given that area and the TTL its HELP states."""
    return [
        UsageCollector(areas["usage_trends"], ttl),
        ExperimentsCollector(areas["experiment_results"], ttl),
        FeaturesCollector(areas["feature_adoption"], ttl),
        FeedbackCollector(areas["feedback"], ttl),
        SegmentsCollector(areas["user_segments"], ttl),
        FunnelsCollector(areas["funnels"], ttl),
        RetentionCollector(areas["retention"], ttl),
        LifecycleCollector(areas["lifecycle"], ttl),
        ForecastsCollector(areas["forecast"], ttl),
    ]


def health_collectors(health: HealthRegistry, events: EventsBackend | None,
                      requests_per_cycle: Callable[[str], int],
                      plausible_hourly: Callable[[], float | None], reports: ReportOutcomes) -> list[Collector]:
    """The service-health collectors: per-source state and budget, the events file's lines, and
    when each report was last sent."""
    return [HealthCollector(health, requests_per_cycle, plausible_hourly),
            EventsCollector(events if isinstance(events, EventsFileSource) else None),
            ReportsCollector(reports)]
