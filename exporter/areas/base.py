"""What every analytics area has in common: its declaration, its context and its snapshots.

An area (usage, features, experiments, ...) turns source data into one analysed **snapshot** per
parameter set. The snapshot is memoized for the TTL; the area's collector and its JSON endpoint
both read that same snapshot, so ``/metrics`` and ``/api/v1/*`` cannot disagree.

An area is one declaration: its section's name in the dashboard, its endpoint, the query
parameters it takes, the typed result it returns, the sources it reads and the parameter sets
``/metrics`` publishes. The API (routes, dashboard, export, OpenAPI) and the CLI read these;
nothing else needs to change to add one (docs/extending.md).

An area is given a narrow :class:`Context` (the memo's load, the clock, which sources are
disabled and why) and the clients it reads, never the whole service.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

from ..cache import Cached
from ..errors import SourceDisabled
from ..health import SourceSummary
from ..results import Timestamp, declare
from ..timeranges import iso_z
from .params import Param

T = TypeVar("T")
Load = Callable[[Hashable, str, Callable[[], Awaitable[Any]]], Awaitable[Cached[Any]]]


@dataclass(frozen=True)
class Context:
    """What an area may use of the running service."""

    load: Load  # memoized, health-tracked and request-counted: load(key, source, loader)
    peek: Callable[[Hashable], Cached[Any] | None]  # the memo's value for a key, without loading
    clock: Callable[[], float]
    disabled: Mapping[str, str]  # why each disabled source is disabled (enabled ones are absent)


@dataclass(frozen=True)
class SectionHeader:
    """What every section carries besides its own fields."""

    time_range: str | None = declare("the window the section covers (null where it takes none)")
    generated_at: Timestamp = declare("when the snapshot was computed")
    sources: dict[str, SourceSummary] = declare("the sources the section used, and how old their data is")
    stale: bool | None = declare("present (true) while a refresh of an expired snapshot is running",
                                 omit_if_none=True)


@dataclass(frozen=True)
class Snapshot:
    """An analysed snapshot as served: the typed body plus when it was made and from what."""

    body: Any  # the area's result type
    time_range: str | None
    generated_at: float
    stale: bool
    sources: tuple[str, ...]

    @property
    def generated_at_iso(self) -> str:
        return iso_z(datetime.fromtimestamp(self.generated_at, timezone.utc))


class Area(ABC):
    """One analytics area. Subclasses declare their section and say how to compute a body."""

    name: ClassVar[str]  # the section's key in the dashboard object
    path: ClassVar[str]  # its endpoint; ``{member}`` in it for an area with members (funnels)
    result: ClassVar[type]  # the typed body
    title: ClassVar[str]  # a few words for the OpenAPI summary
    member: ClassVar[str | None] = None  # the path parameter naming a member, if the area has members
    sources: tuple[str, ...]  # sources it reads; the first one owns the refresh metrics
    query: Mapping[str, Param]  # the query parameters its endpoint takes

    def __init__(self, context: Context) -> None:
        self.context = context

    @abstractmethod
    async def compute(self, params: dict[str, Any]) -> Any:
        """Fetch (through the context's load) and analyse: the section body for ``params``."""

    @abstractmethod
    def metric_params(self) -> list[dict[str, Any]]:
        """The parameter sets whose snapshots ``/metrics`` publishes."""

    def check(self, params: dict[str, Any]) -> None:
        """Raise :class:`~exporter.areas.params.InvalidParameter` when ``params``, each valid on its
        own, do not go together (the API answers 400 before anything is fetched)."""

    def members(self) -> Sequence[str]:
        """The members an area with members serves (one section each); empty for the others."""
        return ()

    def disabled_reason(self) -> str | None:
        return next((self.context.disabled[s] for s in self.sources if s in self.context.disabled), None)

    async def section(self, params: dict[str, Any]) -> Snapshot:
        reason = self.disabled_reason()
        if reason:
            raise SourceDisabled(self.sources[0], reason)
        cached = await self.context.load(self.key(params), self.sources[0], lambda: self.compute(params))
        return self._as_snapshot(cached, params)

    def peek(self, params: dict[str, Any]) -> Snapshot | None:
        """The current snapshot without fetching (what collectors use); None when absent."""
        cached = self.context.peek(self.key(params))
        return None if cached is None else self._as_snapshot(cached, params)

    def fresh(self, params: dict[str, Any]) -> Snapshot | None:
        """The current snapshot if it is within its TTL (asking would not refresh it); else None."""
        snapshot = self.peek(params)
        return None if snapshot is None or snapshot.stale else snapshot

    def key(self, params: dict[str, Any]) -> Hashable:
        """The memo key of the snapshot serving ``params``."""
        return ("area", self.name, tuple(sorted(params.items())))

    def select(self, value: Any, params: dict[str, Any]) -> Any:
        """The section body for ``params`` in the memoized ``value``: the value itself, except in an
        area whose parameter sets all read one shared snapshot and pick their part of it (the
        forecasts: one key for every parameter set, see :meth:`key`)."""
        return value

    def _as_snapshot(self, cached: Cached[Any], params: dict[str, Any]) -> Snapshot:
        time_range = params.get("time_range")
        return Snapshot(self.select(cached.value, params), getattr(time_range, "value", time_range), cached.fetched_at,
                        cached.stale, self.sources)
