"""Shared pieces of the area collectors: HELP wording and families that tolerate missing data."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import Metric

log = logging.getLogger(__name__)


def helptext(what: str, source: str, ttl: float) -> str:
    """HELP says where a value comes from and how old it may be (contract §5)."""
    return f"{what} From {source}; cached up to {ttl:g} s."


def contained(area_name: str, produce: Callable[[], Iterable[Metric]]) -> Iterator[Metric]:
    """Yield ``produce()``'s families; a bug in one area's collector must not blank /metrics."""
    try:
        families = list(produce())
    except Exception:  # noqa: BLE001 - the scrape must survive any collector failure
        log.exception("collector for %s failed; its series are omitted from this scrape", area_name)
        return iter(())
    return iter(families)


class AreaCollector(ABC):
    """A collector over one area's snapshots: ``describe`` lists the families without samples,
    ``collect`` fills them from the snapshots present, contained so a bug cannot blank /metrics."""

    def __init__(self, area: Any) -> None:
        self.area = area

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=False))

    def collect(self) -> Iterator[Metric]:
        return contained(self.area.name, lambda: self._families(with_samples=True))

    @property
    def ttl(self) -> float:
        return self.area.service.config.cache.ttl_seconds

    @abstractmethod
    def _families(self, with_samples: bool) -> list[Metric]:
        """Fresh metric families; with samples only when ``with_samples``."""
