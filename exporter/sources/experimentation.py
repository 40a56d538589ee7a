"""The platform's Experimentation Service (docs/upstreams.md#experimentation-service): experiments and their counts.

Only two things are read: the experiment list (configuration) and each experiment's ``/stats``
(per-variant assignments and converted users). The upstream's own ``p_value``, ``winner`` and
``recommendation`` are ignored; the analysis engine computes its own.

Oddities this client survives:

- the list is an object (``experiments``, ``total``, ``skip``, ``limit``) in no stable order, so
  pages are de-duplicated by id, and a listing that the shifting order left incomplete is read
  again in one page (``limit`` has no maximum upstream);
- timestamps are naive ISO strings in UTC;
- ``/stats`` answers a plain-text HTTP 500 for an experiment whose tracked values are all equal:
  that experiment is reported as unavailable while every other one is analysed;
- the upstream locks up at about 20 concurrent requests: the ``/stats`` fan-out runs at most
  ``max_concurrency`` calls at a time, and the base client's semaphore (one per process, since
  the service builds one client per upstream) caps requests in flight across concurrent scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence, TypeVar
from urllib.parse import quote

from ..config import ExperimentationConfig
from ..errors import SourceError
from ..health import HealthRegistry
from .http import RETRYABLE_STATUSES, ClientSettings, UpstreamClient

log = logging.getLogger(__name__)

SOURCE = "experimentation"
STATUSES = ("draft", "running", "stopped")
PAGE_SIZE = 1000  # the upstream has no maximum; one page holds every experiment in practice
DEFAULT_ALPHA = 0.05  # the upstream's default significance_level
# Failures that describe the service rather than one experiment: they fail the whole refresh, so
# the source is reported down instead of every experiment quietly turning into "no data".
SERVICE_WIDE_FAILURES = frozenset({"connection_error", "timeout", "rate_limited", "unauthorized", "forbidden"})
# Status code reported for an experiment whose /stats failed, by the failure's error code.
EXPERIMENT_FAILURE_CODES = {"not_found": "not_found", "invalid_response": "invalid_response"}

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Arm:
    """A configured variant: its name and traffic weight (``allocation``; None when absent)."""

    name: str
    weight: float | None


@dataclass(frozen=True)
class Experiment:
    """One experiment's configuration; ``arms[0]`` is the control.

    Field names follow the experiment engine's input, so that an experiment without statistics
    can be reported as it is.
    """

    experiment_id: str
    name: str
    status: str
    start_date: datetime | None  # UTC, tz-aware
    end_date: datetime | None  # UTC, tz-aware; set once stopped
    arms: tuple[Arm, ...]
    alpha: float  # the experiment's significance_level
    planned_n_per_arm: int | None  # target_sample_size; None: no fixed design (sequential mode)



@dataclass(frozen=True)
class ExperimentReading:
    """An experiment and either its counts -- (assignments, conversions) per variant -- or the
    status code saying why there are none."""

    experiment: Experiment
    counts: dict[str, tuple[int, int]] | None
    problem: str | None = None


class ExperimentationClient(UpstreamClient):
    # Its 500s are unhandled exceptions, deterministic for the same request (the known NaN bug on
    # /stats answers 500 every time): retrying only spends requests and back-off on a service
    # that locks up under load. Proxies' 502/503/504 and timeouts are still retried.
    retryable_statuses = RETRYABLE_STATUSES - {500}

    def __init__(self, config: ExperimentationConfig, health: HealthRegistry, *, page_size: int = PAGE_SIZE) -> None:
        super().__init__(SOURCE, ClientSettings.from_config(config), health)
        self.page_size = page_size

    async def read_experiments(self, status: str | None = None) -> list[ExperimentReading]:
        """Every experiment (optionally only those with ``status``) with its per-variant counts.

        An experiment whose ``/stats`` the upstream answers with an error is returned with a
        ``problem`` code (``upstream_error``, ``not_found``, ``invalid_response``, or
        ``variants_mismatch`` when its stats do not list the configured variants); a failure of
        the service itself (unreachable, timing out) raises ``SourceError``.
        """
        experiments = await self.list_experiments(status)
        return await _bounded_map(self._read, experiments, self.settings.max_concurrency)

    async def list_experiments(self, status: str | None = None) -> list[Experiment]:
        """The experiment list, every experiment once, sorted by name (the upstream has no order)."""
        found: dict[str, Experiment] = {}
        skip = 0
        while True:
            page, total = await self._list_page(status, skip, self.page_size)
            found.update((e.experiment_id, e) for e in page)
            skip += len(page)  # not the limit: a server may send less than asked
            if not page or skip >= total:
                break
        if len(found) < total:
            # Pages over an order that changes between requests can miss items (and repeat
            # others); one page of everything is a consistent snapshot.
            log.info("experimentation: paging saw %d of %d experiments; reading the list in one page",
                     len(found), total)
            page, total = await self._list_page(status, 0, total)
            found.update((e.experiment_id, e) for e in page)
            if len(found) < total:
                log.warning("experimentation: the list still holds %d of %d experiments", len(found), total)
        return sorted(found.values(), key=lambda e: (e.name.casefold(), e.experiment_id))

    async def variant_counts(self, experiment_id: str) -> dict[str, tuple[int, int]]:
        """``/stats`` of one experiment: variant name -> (assignments, converted users)."""
        # Ids come from the upstream; quoting keeps an odd one from changing the path.
        data = await self.request_json("GET", f"api/v1/experiments/{quote(experiment_id, safe='')}/stats")
        counts = {}
        for row in _field(data, "variants", list, "stats"):
            row = _expect(row, dict, "a stats variant")
            counts[_field(row, "variant", str, "stats variant")] = (
                _integer(row.get("sample_size"), "sample_size"), _integer(row.get("conversions"), "conversions"))
        return counts

    async def _list_page(self, status: str | None, skip: int, limit: int) -> tuple[list[Experiment], int]:
        params = {"skip": str(skip), "limit": str(limit)} | ({"status": status} if status else {})
        data = await self.request_json("GET", "api/v1/experiments", params=params)
        if not isinstance(data, dict):
            raise self.error("unexpected response shape: the experiment list is not an object",
                             code="invalid_response")
        records = _field(data, "experiments", list, "experiment list")
        return [_experiment(record) for record in records], _integer(data.get("total"), "total")

    async def _read(self, experiment: Experiment) -> ExperimentReading:
        try:
            counts = await self.variant_counts(experiment.experiment_id)
        except SourceError as error:
            if error.code in SERVICE_WIDE_FAILURES:
                raise
            log.warning("experiment %s (%s) is unavailable: %s", experiment.experiment_id, experiment.name, error)
            return ExperimentReading(experiment, None, EXPERIMENT_FAILURE_CODES.get(error.code, "upstream_error"))
        configured = {arm.name for arm in experiment.arms}
        if set(counts) != configured:
            log.warning("experiment %s: /stats lists variants %s, the experiment configures %s",
                        experiment.experiment_id, sorted(counts), sorted(configured))
            return ExperimentReading(experiment, None, "variants_mismatch")
        return ExperimentReading(experiment, counts)


async def _bounded_map(call: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """``[await call(item) for item in items]`` with at most ``limit`` calls running at a time.

    Workers take items in turn rather than every call waiting at the client's semaphore, so a
    call's deadline starts when it can actually be sent. The first exception cancels the rest.
    """
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, item in queue:
            results[index] = await call(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        raise
    return results


def _experiment(record: Any) -> Experiment:
    """One list record, shape-checked; values the analysis must judge (alpha, counts) pass as-is."""
    record = _expect(record, dict, "an experiment")
    variants = [_expect(v, dict, "an experiment variant") for v in _field(record, "variants", list, "experiment")]
    alpha = _optional_number(record.get("significance_level"), "significance_level")
    planned = record.get("target_sample_size")
    return Experiment(
        experiment_id=_field(record, "id", str, "experiment"),
        name=_field(record, "name", str, "experiment"),
        status=_field(record, "status", str, "experiment"),
        start_date=_utc(record.get("started_at"), "started_at"),
        end_date=_utc(record.get("stopped_at"), "stopped_at"),
        arms=tuple(Arm(_field(v, "name", str, "experiment variant"),
                       _optional_number(v.get("allocation"), "allocation")) for v in variants),
        alpha=DEFAULT_ALPHA if alpha is None else alpha,
        planned_n_per_arm=None if planned is None else _integer(planned, "target_sample_size"),
    )


def _utc(value: Any, what: str) -> datetime | None:
    """An upstream timestamp: naive ISO strings are UTC (docs/upstreams.md#experimentation-service)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(_expect(value, str, what))
    except ValueError:
        raise _shape_error(f"{what} {value[:40]!r} is not an ISO timestamp") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _field(data: Any, name: str, kind: type, what: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(name), kind):
        raise _shape_error(f"'{name}' of {what} is missing or not a {kind.__name__}")
    return data[name]


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise _shape_error(f"{what} is not a {kind.__name__}")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _shape_error(f"{what} {str(value)[:40]!r} is not an integer")
    return value


def _optional_number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _shape_error(f"{what} {str(value)[:40]!r} is not a finite number")
    return float(value)


def _shape_error(detail: str) -> SourceError:
    return SourceError(SOURCE, f"unexpected response shape: {detail}", code="invalid_response")
