"""The analytics areas, built in one place, each given the clients and settings it reads.

Adding an area: write it (see ``base.Area`` and docs/extending.md), then list it here; routes,
the dashboard, exports and OpenAPI read its declaration, and its collector is registered in
``exporter/collectors/__init__.py``.
"""

from __future__ import annotations

from ..config import Config
from ..events.backend import EventsBackend
from ..sources.experimentation import ExperimentationClient
from ..sources.feedback import FeedbackClient
from ..sources.plausible import PlausibleClient
from .base import Area, Context
from .drilldown import Drilldown
from .experiments import ExperimentsArea
from .features import FeaturesArea
from .feedback import FeedbackArea
from .forecasts import AnomaliesArea, ForecastArea, Forecasts
from .funnels import FunnelsArea
from .identified import IdentifiedUsers
from .retention import LifecycleArea, RetentionArea
from .segments import SegmentsArea
from .usage import UsageArea


def build_areas(context: Context, config: Config, *, plausible: PlausibleClient | None,
                experimentation: ExperimentationClient | None, feedback: FeedbackClient | None,
                events: EventsBackend | None) -> dict[str, Area]:
    """Every area by section name, in the dashboard's order."""
    metrics = config.metrics
    drilldown = Drilldown(config.dimensions, config.max_breakdown_groups, metrics.breakdowns)
    identified = IdentifiedUsers(events, context.clock, config.segments.meaningful_events)
    usage = UsageArea(context, plausible, identified, metrics.usage_ranges, drilldown)
    forecasts = Forecasts(context, events, plausible, config.features, config.funnels,
                          config.segments.meaningful_events)  # one snapshot, read by two areas
    areas: list[Area] = [
        usage,
        ExperimentsArea(context, experimentation, events, config.experiment_metrics),
        FeaturesArea(context, plausible, identified, usage, config.features, metrics.feature_ranges, drilldown),
        FeedbackArea(context, feedback, metrics.feedback_ranges, metrics.feedback_top_categories),
        SegmentsArea(context, events, config.segments, config.features, drilldown),
        FunnelsArea(context, events, plausible, config.funnels, metrics.funnel_ranges, drilldown),
        RetentionArea(context, events, drilldown),
        LifecycleArea(context, events, drilldown),
        ForecastArea(context, forecasts),
        AnomaliesArea(context, forecasts),
    ]
    return {area.name: area for area in areas}
