"""Feature adoption: configured features observed through Plausible goals (docs/api.md#feature-adoption).

Plausible requests per refresh cycle, whatever the number of features (the budget is visible in
``/health``):

* per window: one goal breakdown (every goal at once);
* shared by every window: one all-time goal breakdown (the usage counter) and the weekly series
  for the trends, which cost 2 requests on v2 (goal x week, site visitors by week) and
  ``TREND_WEEKS + 1`` on v1 (one goal breakdown per week, daily site visitors);
* one probe per configured goal absent from the all-time breakdown, to tell "configured in
  Plausible, never used" from "unknown to Plausible". A goal found to exist is remembered for the
  life of the process (goals are rarely deleted, and a deleted one would read as unused, which
  is what it has become), so in the steady state only goals still unknown are asked about again,
  so that fixing one shows up within a TTL.

The window's active users come from the usage area's snapshot of the same window, so that query
is shared with ``/api/v1/usage-trends`` rather than asked again.

With the identified events source, ``filter=`` and ``breakdown=`` give the reach among the users
selected (docs/api.md#filters-and-breakdowns): the plain section of the window (one snapshot, so
Plausible is not asked again) with the unique users of each feature's event and the active users
(the usage area's drilled snapshot) of those users.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from ..analysis.adoption import (
    FeatureAdoptionSection,
    FeatureGroup,
    FeatureUsage,
    feature_adoption,
    first_complete_week,
    group_adoption,
    selected_reach,
)
from ..concurrency import gather_or_cancel
from ..config import FeatureConfig
from ..results import with_fields
from ..sources.plausible import GoalUses, PlausibleClient
from ..timeranges import ResolvedRange, TimeRange, resolve
from .base import Area, Context
from .drilldown import Drilldown
from .identified import IdentifiedUsers
from .params import time_range
from .usage import WITHOUT_EVENTS, UsageArea

log = logging.getLogger(__name__)

TREND_WEEKS = 12  # docs/methods.md#trends: the last 12 whole weeks
NO_USES = GoalUses(visitors=0.0, events=0.0)  # a goal absent from a breakdown had no conversions


class FeaturesArea(Area):
    name = "feature_adoption"
    path = "/api/v1/feature-adoption"
    result = FeatureAdoptionSection
    title = "Feature adoption"

    def __init__(self, context: Context, plausible: PlausibleClient | None, identified: IdentifiedUsers,
                 usage: UsageArea, features: tuple[FeatureConfig, ...], windows: tuple[TimeRange, ...],
                 drilldown: Drilldown) -> None:
        super().__init__(context)
        self.drilldown = drilldown
        self.query = {"time_range": time_range("30d"), **drilldown.query}
        self.plausible = plausible
        self.identified = identified
        self.usage = usage  # the window's active users, the denominator, are its snapshot's
        self.features = features
        self.windows = windows
        self._known_goals: set[str] = set()  # goals Plausible confirmed; never asked about again
        self._reported_unknown: set[str] = set()  # goals already logged as unknown to Plausible
        # Unique users come from the identified events when there are any.
        self.sources = ("plausible", "events") if identified.available else ("plausible",)

    def check(self, params: dict[str, Any]) -> None:
        self.drilldown.check(params, unavailable=None if self.identified.available else WITHOUT_EVENTS)

    async def compute(self, params: dict[str, Any]) -> FeatureAdoptionSection:
        if self.drilldown.asked(params):
            return await self._drilled(params)
        client, load = self.plausible, self.context.load
        window_range: TimeRange = params["time_range"]
        now = datetime.fromtimestamp(self.context.clock(), timezone.utc)
        window = resolve(window_range, now, client.tz)
        today = now.astimezone(client.tz).date()
        first_week = first_complete_week(today, TREND_WEEKS)
        usage, (window_uses, note), all_time, weekly = await gather_or_cancel(
            self.usage.section({"time_range": window_range}),
            client.goal_uses(window),
            load(("plausible", "goals", "all_time"), "plausible", lambda: client.all_time_goal_uses(today)),
            load(("plausible", "goals", "weekly", first_week.isoformat()), "plausible",
                 lambda: self._weekly(first_week)),
        )
        goal_series, weekly_active = weekly.value
        unknown = await self._unknown_goals(all_time.value)
        features = [self._usage(feature, unknown, window_uses, all_time.value, goal_series)
                    for feature in self.features]
        basis, codes = usage.body.basis, []
        if basis == "identified_users":  # counted like the usage area's active users, the denominator
            features, codes = await self._identified(features, window)
            basis = "plausible_visitors" if codes else basis
        week_starts = [datetime.combine(first_week + timedelta(weeks=i), time(), client.tz) for i in range(TREND_WEEKS)]
        return with_fields(feature_adoption(features, active_users=usage.body.active_users, week_starts=week_starts,
                                            weekly_active=weekly_active, basis=basis, unknown_goals=sorted(unknown),
                                            approximation=note, codes=codes), FeatureAdoptionSection)

    async def _drilled(self, params: dict[str, Any]) -> FeatureAdoptionSection:
        """The plain section of the window with the reach among the users selected."""
        window_range = params["time_range"]
        window = resolve(window_range, datetime.fromtimestamp(self.context.clock(), timezone.utc), self.plausible.tz)
        events = {f.name: f.event for f in self.features if f.event}
        selection = self.drilldown.selection(params)
        plain, (counts, _), (found, _) = await gather_or_cancel(
            self.section({"time_range": window_range}), self.identified.user_counts(window, selection),
            self.identified.feature_users(window, events.values(), selection))
        whole = selected_reach(plain.body, self._by_feature(events, [found.users]), counts.active)
        breakdown = None
        if counts.by_value is not None:
            values = list(counts.by_value)
            active = [counts.by_value[value][1] for value in values]
            by_value = found.by_value or {}
            names = [feature.name for feature in self.features]
            breakdown = self.drilldown.breakdown(params, values, active, FeatureGroup, lambda codes: group_adoption(
                names, self._by_feature(events, [by_value.get(values[code], {}) for code in codes]),
                sum(active[code] for code in codes)))
        return with_fields(whole, FeatureAdoptionSection, basis="identified_users",
                           filters=self.drilldown.filters(params), breakdown=breakdown)

    @staticmethod
    def _by_feature(events: dict[str, str], users: list[dict[str, int]]) -> dict[str, int]:
        """Unique users of each feature with an event, summed over ``users`` (per event name) of
        disjoint sets of users."""
        return {name: sum(part.get(event, 0) for part in users) for name, event in events.items()}

    async def _identified(self, features: list[FeatureUsage], window: ResolvedRange
                          ) -> tuple[list[FeatureUsage], list[str]]:
        """``features`` with unique users (the observable ones) and first and last use from the
        events, for those naming an event."""
        events = {f.name: f.event for f in self.features if f.event}
        (users, codes), (dates, _) = await gather_or_cancel(self.identified.feature_users(window, events.values()),
                                                            self.identified.feature_dates(events.values()))
        if users is None or dates is None:
            return features, codes
        return [self._with_events(f, users.users[events[f.name]], dates[events[f.name]]) if f.name in events else f
                for f in features], codes

    @staticmethod
    def _with_events(feature: FeatureUsage, users: int, dates: tuple[int, int] | None) -> FeatureUsage:
        first, last = (None, None) if dates is None else (datetime.fromtimestamp(t, timezone.utc) for t in dates)
        unique_users = float(users) if feature.observable else feature.unique_users
        codes = feature.status_codes + (("never_used",) if dates is None else ())
        return dataclasses.replace(feature, unique_users=unique_users, first_seen=first, last_used=last,
                                   status_codes=codes)

    async def _weekly(self, first_week: date) -> tuple[dict[str, list[float]], list[float]]:
        """Unique visitors per goal and of the whole site, for each trend week."""
        client = self.plausible
        goals, visitors = await gather_or_cancel(client.weekly_goal_visitors(first_week, TREND_WEEKS),
                                               client.weekly_visitors(first_week, TREND_WEEKS))
        return goals, visitors

    async def _unknown_goals(self, all_time: dict[str, GoalUses]) -> set[str]:
        """Configured goals Plausible does not know. Only goals never converted need asking."""
        client = self.plausible
        self._known_goals.update(all_time)
        never_used = sorted({f.goal for f in self.features if f.goal and f.goal not in self._known_goals})
        known = await gather_or_cancel(*(
            self.context.load(("plausible", "goal_exists", goal), "plausible",
                              lambda goal=goal: client.goal_exists(goal))
            for goal in never_used))
        unknown = {goal for goal, exists in zip(never_used, known) if not exists.value}
        self._known_goals.update(set(never_used) - unknown)
        for goal in sorted(unknown - self._reported_unknown):
            log.warning("Plausible has no goal named %r: the features using it show no data until the goal is "
                        "configured in Plausible or features[].goal is corrected", goal)
        self._reported_unknown = unknown  # a goal that comes back after being fixed is reported again
        return unknown

    @staticmethod
    def _usage(feature: FeatureConfig, unknown: set[str], window_uses: dict[str, GoalUses],
               all_time: dict[str, GoalUses], goal_series: dict[str, list[float]]) -> FeatureUsage:
        if feature.goal is None:
            return FeatureUsage.unobservable(feature.name, "needs_events_source")
        if feature.goal in unknown:
            return FeatureUsage.unobservable(feature.name, "unknown_goal")
        uses = window_uses.get(feature.goal, NO_USES)
        return FeatureUsage(feature.name, unique_users=uses.visitors, total_uses=uses.events,
                            all_time_uses=all_time.get(feature.goal, NO_USES).events,
                            weekly_users=goal_series.get(feature.goal, [0.0] * TREND_WEEKS))

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": window} for window in self.windows]
