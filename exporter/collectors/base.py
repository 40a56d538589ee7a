"""Shared pieces of the area collectors: HELP wording and families that tolerate missing data."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from prometheus_client.core import Metric

from ..results import round_float

if TYPE_CHECKING:
    from ..areas.base import Area

log = logging.getLogger(__name__)


def helptext(what: str, source: str, ttl: float) -> str:
    """HELP says where a value comes from and how old it may be (docs/metrics.md)."""
    return f"{what} From {source}; cached up to {ttl:g} s."


def contained(area_name: str, produce: Callable[[], Iterable[Metric]]) -> Iterator[Metric]:
    """Yield ``produce()``'s families, values stated as the JSON states them; a bug in one area's
    collector must not blank /metrics."""
    try:
        families = list(produce())
    except Exception:  # noqa: BLE001 - the scrape must survive any collector failure
        log.exception("collector for %s failed; its series are omitted from this scrape", area_name)
        return iter(())
    for family in families:
        # The same rounding as the JSON of the same snapshot (exporter.results): the two agree exactly.
        family.samples = [sample._replace(value=round_float(sample.value)) for sample in family.samples]
    return iter(families)


class AreaCollector(ABC):
    """A collector over one area's snapshots: ``describe`` lists the families without samples,
    ``collect`` fills them from the snapshots present, contained so a bug cannot blank /metrics."""

    def __init__(self, area: "Area", ttl: float) -> None:
        self.area = area
        self.ttl = ttl  # how old a value may be, for HELP

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=False))

    def collect(self) -> Iterator[Metric]:
        return contained(self.area.name, lambda: self._families(with_samples=True))

    def published(self) -> list[tuple[dict[str, Any], Any]]:
        """(parameters, body) of each parameter set /metrics publishes whose snapshot is present."""
        return [(params, snapshot.body) for params in self.area.metric_params()
                if (snapshot := self.area.peek(params)) is not None]

    @abstractmethod
    def _families(self, with_samples: bool) -> list[Metric]:
        """Fresh metric families; with samples only when ``with_samples``."""
