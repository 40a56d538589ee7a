"""Funnels: ordered funnels over the identified events, or Plausible goals without them (contract §4.5).

With the events source, every configured funnel is analysed exactly (``method:
"ordered_events"``): entries are the step-1 events from the start of the time range (UTC) up to
now, and later steps may follow within the funnel's window. The events backend works out how far
each user got (the file backend in a worker thread, ClickHouse on its server); the report is
made here from that small outcome.

Without it, a funnel whose every step names a Plausible goal is approximated from goal counts
(``method: "aggregate_goals"``, methods.md section 2); a funnel lacking goals answers 503 naming
the settings that would make it work.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..analysis.funnels import progress_report
from ..analysis.goal_funnels import goal_funnel_report
from ..collectors.funnels import FunnelsCollector
from ..config import FunnelConfig
from ..errors import SourceDisabled
from ..timeranges import TimeRange, iso_z, resolve
from .base import Area, Section


class FunnelsArea(Area):
    name = "funnels"

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.sources = ("events",) if service.events is not None else ("plausible",)

    @property
    def method(self) -> str:
        """How funnels are computed with the sources configured."""
        return "ordered_events" if self.service.events is not None else "aggregate_goals"

    def disabled_reason(self) -> str | None:
        if self.service.events is None and self.service.plausible is None:
            sources = self.service.health.sources
            return (f"funnels need the events source ({sources['events'].disabled_reason}) "
                    f"or Plausible goals ({sources['plausible'].disabled_reason})")
        return super().disabled_reason()

    async def section(self, params: dict[str, Any]) -> Section:
        if self.disabled_reason() is None and self.method == "aggregate_goals":
            self._require_goals(self._funnel(params))
        return await super().section(params)

    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        funnel, time_range = self._funnel(params), params["time_range"]
        if self.method == "ordered_events":
            return await self._ordered_events(funnel, time_range)
        return await self._aggregate_goals(funnel, time_range)

    async def _ordered_events(self, funnel: FunnelConfig, time_range: TimeRange) -> dict[str, Any]:
        now = self.service.clock()
        window = resolve(time_range, datetime.fromtimestamp(now, timezone.utc), timezone.utc)
        start = int(window.start.timestamp())
        end = min(int(window.end.timestamp()), int(now) + 1)  # nobody enters after now
        definition = funnel.definition()
        progress = await self.service.events.funnel_reach(definition, range_start=start, range_end=end)
        body = progress_report(definition, progress, range_end=end, now=int(now))
        body["entries_between"] = [iso_z(datetime.fromtimestamp(t, timezone.utc)) for t in (start, end)]
        return body

    async def _aggregate_goals(self, funnel: FunnelConfig, time_range: TimeRange) -> dict[str, Any]:
        client = self.service.plausible
        window = resolve(time_range, datetime.fromtimestamp(self.service.clock(), timezone.utc), client.tz)
        counts = await client.goal_sequence_visitors(window, funnel.goals)
        # Every time range ends now, so sessions still open may yet complete more steps.
        body = goal_funnel_report(funnel.definition(), counts.visitors, same_session=counts.same_session,
                                  incomplete_cohort=True)
        if counts.approximation:
            body["approximation"] = counts.approximation
            body["status_codes"].append("approximated_range")
        return body

    def metric_params(self) -> list[dict[str, Any]]:
        funnels = self.service.config.funnels
        if self.method == "aggregate_goals":  # the others cannot be computed: no series for them
            funnels = tuple(funnel for funnel in funnels if funnel.goals is not None)
        return [{"funnel_name": funnel.name, "time_range": time_range}
                for funnel in funnels for time_range in self.service.config.metrics.funnel_ranges]

    def collector(self) -> FunnelsCollector:
        return FunnelsCollector(self)

    def catalogue(self) -> dict[str, Any]:
        """The configured funnels, each step with the event (and goal, if any) that marks it."""
        return {"funnels": [{"name": funnel.name, "description": funnel.description,
                             "window_seconds": funnel.window_seconds,
                             "steps": [{"name": step.name, "event": step.event, "goal": step.goal}
                                       for step in funnel.steps]}
                            for funnel in self.service.config.funnels],
                "method": self.method}

    def _funnel(self, params: dict[str, Any]) -> FunnelConfig:
        funnel = self.service.config.funnel(params["funnel_name"])
        if funnel is None:  # the route answers 404 before asking; this is a caller's bug
            raise ValueError(f"no funnel named {params['funnel_name']!r} is configured")
        return funnel

    def _require_goals(self, funnel: FunnelConfig) -> None:
        index = self.service.config.funnels.index(funnel)
        missing = [f"funnels[{index}].steps[{i}].goal" for i, step in enumerate(funnel.steps) if step.goal is None]
        if missing:
            events_off = self.service.health.sources["events"].disabled_reason
            raise SourceDisabled("events", f"{events_off}; without it, funnel {funnel.name!r} falls back to "
                                           f"Plausible goals, which needs a goal on every step: set {', '.join(missing)}")
