"""The analytics areas. Adding an area: write it (see base.Area), then list it here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Area
from .experiments import ExperimentsArea
from .feedback import FeedbackArea
from .features import FeaturesArea
from .funnels import FunnelsArea
from .segments import SegmentsArea
from .usage import UsageArea

if TYPE_CHECKING:
    from ..service import AnalyticsService

AREA_TYPES: tuple[type[Area], ...] = (UsageArea, ExperimentsArea, FeaturesArea, FeedbackArea, FunnelsArea,
                                      SegmentsArea)


def build_areas(service: "AnalyticsService") -> dict[str, Area]:
    return {area.name: area for area in (kind(service) for kind in AREA_TYPES)}
