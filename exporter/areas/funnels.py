"""Funnels: ordered funnels over the identified events, or Plausible goals without them (docs/api.md#funnel).

With the events source, every configured funnel is analysed exactly (``method:
"ordered_events"``): entries are the step-1 events from the start of the time range (UTC) up to
now, and later steps may follow within the funnel's window. The events backend works out how far
each user got (the file backend in a worker thread, ClickHouse on its server); the report is
made here from that small outcome.

Without it, a funnel whose every step names a Plausible goal is approximated from goal counts
(``method: "aggregate_goals"``, docs/methods.md#funnels); a funnel lacking goals answers 503
naming the settings that would make it work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from ..analysis.funnels import FunnelReport, FunnelSection, funnel_section
from ..analysis.goal_funnels import goal_funnel_report
from ..config import FunnelConfig
from ..errors import SourceDisabled
from ..events.backend import EventsBackend
from ..results import SECONDS, declare, with_fields
from ..sources.plausible import PlausibleClient
from ..timeranges import TimeRange, iso_z, resolve
from .base import Area, Context, Snapshot
from .drilldown import Drilldown
from .params import InvalidParameter, time_range

Method = Literal["ordered_events", "aggregate_goals"]


@dataclass(frozen=True)
class CatalogueStep:
    name: str = declare("the step's name", key=True)
    event: str = declare("the event that marks the step")
    goal: str | None = declare("the Plausible goal that marks it without an events source")


@dataclass(frozen=True)
class CatalogueFunnel:
    name: str = declare("the funnel's name (its path in /api/v1/funnel/{funnel_name})", key=True)
    description: str = declare("what the funnel measures")
    window_seconds: int = declare("conversion window from the first step", SECONDS)
    steps: tuple[CatalogueStep, ...] = declare("in order")


@dataclass(frozen=True)
class FunnelCatalogue:
    """The configured funnels, each step with the event (and goal, if any) that marks it."""

    funnels: tuple[CatalogueFunnel, ...] = declare("in configuration order")
    method: Method = declare("how funnels are computed with the sources configured")


class FunnelsArea(Area):
    name = "funnels"
    path = "/api/v1/funnel/{funnel_name}"
    result = FunnelSection
    title = "One funnel"
    member = "funnel_name"

    def __init__(self, context: Context, events: EventsBackend | None, plausible: PlausibleClient | None,
                 funnels: tuple[FunnelConfig, ...], windows: tuple[TimeRange, ...], drilldown: Drilldown,
                 published_breakdowns: tuple[str, ...] = ()) -> None:
        super().__init__(context)
        self.events = events
        self.plausible = plausible
        self.funnels = {funnel.name: funnel for funnel in funnels}
        self.windows = windows
        self.drilldown = drilldown
        self.published_breakdowns = published_breakdowns
        self.query = {"time_range": time_range("30d"), **drilldown.query}
        self.method: Method = "ordered_events" if events is not None else "aggregate_goals"
        self.sources = ("events",) if events is not None else ("plausible",)

    def members(self) -> list[str]:
        return list(self.funnels)

    def disabled_reason(self) -> str | None:
        disabled = self.context.disabled
        if self.events is None and self.plausible is None:
            return (f"funnels need the events source ({disabled['events']}) "
                    f"or Plausible goals ({disabled['plausible']})")
        return super().disabled_reason()

    def check(self, params: dict[str, Any]) -> None:
        self.drilldown.check(params)
        asked = [name for name in ("filter", "breakdown") if name in params]
        if asked and self.events is None:
            raise InvalidParameter(asked[0], f"{asked[0]} needs the identified events source: funnels from "
                                             "Plausible's goal counts cannot tell users apart")

    async def section(self, params: dict[str, Any]) -> Snapshot:
        if self.disabled_reason() is None and self.method == "aggregate_goals":
            self._require_goals(self._funnel(params))
        return await super().section(params)

    async def compute(self, params: dict[str, Any]) -> FunnelSection:
        funnel, window = self._funnel(params), params["time_range"]
        if self.method == "ordered_events":
            return await self._ordered_events(funnel, window, params)
        return with_fields(await self._aggregate_goals(funnel, window), FunnelSection)

    async def _ordered_events(self, funnel: FunnelConfig, window_range: TimeRange,
                              params: dict[str, Any]) -> FunnelSection:
        now = self.context.clock()
        window = resolve(window_range, datetime.fromtimestamp(now, timezone.utc), timezone.utc)
        start = int(window.start.timestamp())
        end = min(int(window.end.timestamp()), int(now) + 1)  # nobody enters after now
        definition = funnel.definition()
        progress = await self.events.funnel_reach(definition, range_start=start, range_end=end,
                                                  selection=self.drilldown.selection(params))
        groups = None
        if progress.groups is not None:  # the groups by entrants
            groups = self.drilldown.groups(progress.values, np.bincount(progress.groups,
                                                                        minlength=len(progress.values)))
        section = funnel_section(definition, progress, range_end=end, now=int(now),
                                 filters=self.drilldown.filters(params), dimension=params.get("breakdown"),
                                 groups=groups)
        entries = tuple(iso_z(datetime.fromtimestamp(t, timezone.utc)) for t in (start, end))
        return dataclasses.replace(section, entries_between=entries)

    async def _aggregate_goals(self, funnel: FunnelConfig, window_range: TimeRange) -> FunnelReport:
        client = self.plausible
        window = resolve(window_range, datetime.fromtimestamp(self.context.clock(), timezone.utc), client.tz)
        counts = await client.goal_sequence_visitors(window, funnel.goals)
        # Every time range ends now, so sessions still open may yet complete more steps.
        report = goal_funnel_report(funnel.definition(), counts.visitors, same_session=counts.same_session,
                                    incomplete_cohort=True)
        if counts.approximation:
            report = dataclasses.replace(report, approximation=counts.approximation,
                                         status_codes=(*report.status_codes, "approximated_range"))
        return report

    def metric_params(self) -> list[dict[str, Any]]:
        funnels = self.funnels.values()
        if self.method == "aggregate_goals":  # the others cannot be computed: no series for them
            funnels = [funnel for funnel in funnels if funnel.goals is not None]
        plain = [{"funnel_name": funnel.name, "time_range": window} for funnel in funnels for window in self.windows]
        if self.method != "ordered_events":
            return plain
        broken_down = [params | {"breakdown": dimension} for params in plain for dimension in self.published_breakdowns]
        return plain + broken_down

    def catalogue(self) -> FunnelCatalogue:
        """The configured funnels, each step with the event (and goal, if any) that marks it."""
        return FunnelCatalogue(
            tuple(CatalogueFunnel(funnel.name, funnel.description, funnel.window_seconds,
                                  tuple(CatalogueStep(step.name, step.event, step.goal) for step in funnel.steps))
                  for funnel in self.funnels.values()),
            self.method)

    def _funnel(self, params: dict[str, Any]) -> FunnelConfig:
        funnel = self.funnels.get(params["funnel_name"])
        if funnel is None:  # the route answers 404 before asking; this is a caller's bug
            raise ValueError(f"no funnel named {params['funnel_name']!r} is configured")
        return funnel

    def _require_goals(self, funnel: FunnelConfig) -> None:
        index = list(self.funnels).index(funnel.name)
        missing = [f"funnels[{index}].steps[{i}].goal" for i, step in enumerate(funnel.steps) if step.goal is None]
        if missing:
            raise SourceDisabled("events", f"{self.context.disabled['events']}; without it, funnel {funnel.name!r} "
                                           f"falls back to Plausible goals, which needs a goal on every step: set "
                                           f"{', '.join(missing)}")
