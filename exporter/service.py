"""The running service: configuration, sources, memo, health and the analytics areas, wired once.

Every fetch goes through :meth:`AnalyticsService.load`, which memoizes it, records the source's
health and counts the upstream requests the refresh cost (the Plausible budget is derived from
those counts). Each area gets that load, the clock and the disabled sources' reasons as its
:class:`~exporter.areas.base.Context`, and the clients it reads; it never sees this object.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any, Awaitable, Callable, Hashable, Iterator, Sequence, TypeVar

from .analysis.experiments.event_metrics import EXPERIMENT_PROPERTY, VARIANT_PROPERTY
from .areas import build_areas
from .areas.base import Area, Context
from .cache import Cached, Memo
from .config import ENVIRONMENT_FOR_KEY, Config, DimensionConfig, EventsConfig
from .events.backend import EventsBackend
from .events.clickhouse_source import ClickHouseEventsSource
from .events.file_source import EventsFileSource
from .health import HealthRegistry
from .reports.outcomes import ReportOutcomes
from .sources.experimentation import ExperimentationClient
from .sources.feedback import FeedbackClient
from .sources.http import counting_requests
from .sources.plausible import PlausibleClient

T = TypeVar("T")
log = logging.getLogger(__name__)
# The memo key whose load is running in this task: a load started from inside it is one of its parts.
_loading_key: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar("loading_key", default=None)


class AnalyticsService:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.health = HealthRegistry(clock)
        self.memo = Memo(config.cache.ttl_seconds, clock=clock)
        self.report_outcomes = ReportOutcomes()  # the scheduled reports' last sends, for /metrics
        self._requests_by_key: dict[Hashable, tuple[str, int]] = {}  # per query: its source, requests last load
        self._parts: dict[Hashable, set[Hashable]] = {}  # per query: the queries its load asked for
        self._last_forced_refresh: float | None = None  # clock time of the last POST /metrics/refresh
        self._clients: list[Any] = []
        # One client per upstream for the life of the process; None when the source is disabled.
        self.plausible: PlausibleClient | None = self._register("plausible", config.sources.plausible, PlausibleClient)
        self.experimentation: ExperimentationClient | None = self._register(
            "experimentation", config.sources.experimentation, ExperimentationClient)
        self.feedback: FeedbackClient | None = self._register("feedback", config.sources.feedback, FeedbackClient)
        self.events: EventsBackend | None = self._register_events(config.events, config.dimensions,
                                                                  config.experiment_metrics is not None)
        disabled = {name: state.disabled_reason for name, state in self.health.sources.items() if not state.enabled}
        context = Context(load=self.load, peek=self.memo.peek, clock=clock, disabled=disabled)
        self.areas: dict[str, Area] = build_areas(context, config, plausible=self.plausible,
                                                  experimentation=self.experimentation, feedback=self.feedback,
                                                  events=self.events)

    def _register(self, name: str, source_config: Any, factory: Callable[[Any, HealthRegistry], T]) -> T | None:
        """Register source ``name`` with the health registry; build its client if it can run."""
        reason = _disabled_reason(f"sources.{name}", source_config.enabled, source_config.missing_settings())
        self.health.register(name, reason)
        if reason is not None:
            return None
        client = factory(source_config, self.health)
        self._clients.append(client)
        return client

    def _register_events(self, events: EventsConfig, dimensions: Sequence[DimensionConfig],
                         exposures: bool) -> EventsBackend | None:
        """Register the identified events source (configured under ``events``, not ``sources``):
        a file read into memory, or a ClickHouse table queried where it is (``events.kind``). The
        file keeps the event properties the dimensions read, and the exposures' when experiments
        are measured on the events (``exposures``)."""
        reason = _disabled_reason("events", events.enabled, events.missing_settings())
        self.health.register("events", reason)
        if reason is not None:
            return None
        if events.kind == "clickhouse":
            source = ClickHouseEventsSource(events, self.health)
            self._clients.append(source)  # an HTTP client: closed with the others
            return source
        properties = [dimension.property for dimension in dimensions]
        if exposures:
            properties += [EXPERIMENT_PROPERTY, VARIANT_PROPERTY]
        return EventsFileSource(events, self.health, clock=self.clock, properties=properties)

    async def close(self) -> None:
        """At shutdown: end the loads still running, then close every upstream session.

        The loads go first, so none of them meets a closed session half-way (and none is left
        behind to hold a connection to a slow upstream until its own timeout).
        """
        loads = self.memo.in_flight()
        for load in loads:
            load.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        for client in self._clients:
            await client.close()

    async def load(self, key: Hashable, source: str, loader: Callable[[], Awaitable[T]]) -> Cached[T]:
        """Memoized ``loader()``: health-tracked and request-counted for ``source``."""
        parent = _loading_key.get()
        if parent is not None:
            self._parts.setdefault(parent, set()).add(key)
        return await self.memo.get(key, self._tracked(key, source, loader))

    def _tracked(self, key: Hashable, source: str, loader: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def tracked() -> T:
            _loading_key.set(key)  # this load runs in a task of its own: the setting stays in it
            self._parts.pop(key, None)  # its parts are those of its last load
            result, attempts = await counting_requests(lambda: self.health.track(source, loader))
            self._forget_dropped()
            self._requests_by_key[key] = (source, attempts)
            return result

        return tracked

    def _forget_dropped(self) -> None:
        """Forget the bookkeeping of queries the memo no longer holds (one-off parameters). A query
        still loading is not held yet, but the parts it has asked for so far are its own."""
        held = self.memo.keys()
        for table in (self._requests_by_key, self._parts):
            for key in [key for key in table if key not in held and self.memo.loading(key) is None]:
                del table[key]

    def requests_per_cycle(self, source: str) -> int:
        """Upstream requests of ``source`` that one refresh of everything ``/metrics`` publishes
        costs, as last measured: the published snapshots and every query their loads ask for.

        What else callers asked for (another time range, a forced refresh) does not change it.
        """
        pending = [area.key(params) for area, params in self.published_snapshots()]
        cycle: set[Hashable] = set()
        while pending:
            key = pending.pop()
            if key not in cycle:
                cycle.add(key)
                pending.extend(self._parts.get(key, ()))
        counted = (self._requests_by_key.get(key) for key in cycle)
        return sum(count for name, count in filter(None, counted) if name == source)

    def source_details(self, source: str) -> dict[str, Any]:
        """Source-specific facts for ``/health``: the Plausible API version and request budget, the
        events file's size and malformed lines."""
        if source == "events" and self.events is not None:
            return self.events.details()
        if source != "plausible" or self.plausible is None:
            return {}
        return {"api_version": self.plausible.api_version or "auto (not yet detected)",
                "requests_per_refresh_cycle": self.requests_per_cycle(source),
                "projected_hourly_requests": round(self.projected_hourly_requests(source), 1),
                "requests_last_hour": self.health.requests_in_last_hour(source),
                "hourly_request_budget": self.config.sources.plausible.hourly_request_budget}

    def projected_hourly_requests(self, source: str) -> float:
        return self.requests_per_cycle(source) * 3600.0 / self.config.cache.ttl_seconds

    def plausible_hourly_requests(self) -> float | None:
        """Plausible's projected requests per hour; None while it is disabled."""
        return None if self.plausible is None else self.projected_hourly_requests("plausible")

    def published_snapshots(self) -> Iterator[tuple[Area, dict[str, Any]]]:
        """Every (area, params) whose snapshot ``/metrics`` publishes, for the areas that can run."""
        for area in self.areas.values():
            if area.disabled_reason() is None:
                for params in area.metric_params():
                    yield area, params

    def published_snapshots_fresh(self) -> bool:
        """Whether every snapshot ``/metrics`` publishes is held and within its TTL."""
        return all(area.fresh(params) is not None for area, params in self.published_snapshots())

    async def refresh_metrics(self, timeout: float) -> None:
        """Bring every snapshot ``/metrics`` publishes up to date, waiting at most ``timeout`` s.

        Loads still running at the deadline go on in the background (the memo shields them), so
        the next scrape finds them done; this scrape renders what is there now. Fresh snapshots
        are skipped without a task: that is every snapshot on most scrapes.
        """
        pending = [asyncio.ensure_future(self._quietly(area.section(params)))
                   for area, params in self.published_snapshots() if area.fresh(params) is None]
        if pending:
            await asyncio.wait(pending, timeout=max(timeout, 0.0))

    def claim_forced_refresh(self) -> float:
        """Start a forced refresh now (returns 0) or say how many seconds until one is allowed."""
        interval = self.config.server.min_forced_refresh_seconds
        now = self.clock()
        if self._last_forced_refresh is not None and now - self._last_forced_refresh < interval:
            return interval - (now - self._last_forced_refresh)
        self._last_forced_refresh = now
        return 0.0

    async def refresh_all(self, timeout: float) -> dict[str, Any]:
        """Force a refresh of every published snapshot; per-source outcome (``pending`` if slow)."""
        tasks = {}
        for area in self.areas.values():
            if area.disabled_reason() is not None:
                continue
            for params in area.metric_params():
                key, source = area.key(params), area.sources[0]
                loader = self._tracked(key, source, lambda area=area, params=params: area.compute(params))
                tasks[key] = (source, asyncio.ensure_future(self.memo.refresh(key, loader)))
        if tasks:
            await asyncio.wait([task for _, task in tasks.values()], timeout=timeout)
        outcome: dict[str, Any] = {}
        for source, task in tasks.values():
            state = "pending" if not task.done() else ("failed" if task.exception() else "refreshed")
            if outcome.get(source) in (None, "refreshed") or state == "failed":
                outcome[source] = state
        for name, summary in self.health.sources.items():
            outcome.setdefault(name, "disabled" if not summary.enabled else "not_used")
        return outcome

    @staticmethod
    async def _quietly(awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:  # noqa: BLE001 - recorded in the source's health (and logged there if unexpected)
            pass  # the scrape shows the source as down


def _disabled_reason(prefix: str, enabled: bool, missing: list[str]) -> str | None:
    if not enabled:
        return f"disabled in configuration ({prefix}.enabled: false)"
    if missing:
        settings = ", ".join(f"{prefix}.{m}" + (f" ({ENVIRONMENT_FOR_KEY[f'{prefix}.{m}']})"
                                                if f"{prefix}.{m}" in ENVIRONMENT_FOR_KEY else "")
                             for m in missing)
        return f"not configured: set {settings}"
    return None
