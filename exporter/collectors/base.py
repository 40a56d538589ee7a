"""Shared pieces of the area collectors: HELP wording and families that tolerate missing data."""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

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
