"""Usage trends: who is active and what they look at, from Plausible (docs/api.md#usage-trends).

With the identified events source, ``filter=`` and ``breakdown=`` count the users selected
(docs/api.md#filters-and-breakdowns): a drilled section is the plain section of its window (one
snapshot, so Plausible is not asked again) with the user counts of the users selected.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..analysis.usage import GroupUsers, UsageGroup, UsageSection, UserCounts, usage_trends
from ..concurrency import gather_or_cancel
from ..results import with_fields
from ..sources.plausible import PlausibleClient
from ..timeranges import TimeRange, resolve
from .base import Area, Context
from .drilldown import Drilldown
from .identified import UNAVAILABLE, IdentifiedUsers
from .params import time_range

TOP_N = 10
WITHOUT_EVENTS = "without it, usage counts Plausible's visitors, who carry no user attributes"


class UsageArea(Area):
    name = "usage_trends"
    path = "/api/v1/usage-trends"
    result = UsageSection
    title = "Usage trends"

    def __init__(self, context: Context, plausible: PlausibleClient | None, identified: IdentifiedUsers,
                 windows: tuple[TimeRange, ...], drilldown: Drilldown) -> None:
        super().__init__(context)
        self.plausible = plausible
        self.identified = identified
        self.windows = windows
        self.drilldown = drilldown
        self.query = {"time_range": time_range("7d"), **drilldown.query}
        # The user counts come from the identified events when there are any.
        self.sources = ("plausible", "events") if identified.available else ("plausible",)

    def check(self, params: dict[str, Any]) -> None:
        self.drilldown.check(params, unavailable=None if self.identified.available else WITHOUT_EVENTS)

    async def compute(self, params: dict[str, Any]) -> UsageSection:
        if self.drilldown.asked(params):
            return await self._drilled(params)
        client, load = self.plausible, self.context.load
        now = datetime.fromtimestamp(self.context.clock(), timezone.utc)
        window = resolve(params["time_range"], now, client.tz)
        # Everything of one window is asked concurrently; the realtime and all-time figures are
        # shared by every window, so they are memoized once for all of them.
        (aggregate, points, (pages, note), (sources, _), realtime, all_time,
         (identified, codes)) = await gather_or_cancel(
            client.aggregate(window),
            client.timeseries(window),
            client.breakdown(window, "event:page", limit=TOP_N),
            client.breakdown(window, "visit:source", limit=TOP_N),
            load(("plausible", "realtime"), "plausible", lambda: client.realtime_visitors(now)),
            load(("plausible", "all_time"), "plausible", lambda: client.all_time(now.date())),
            self.identified.user_counts(window),
        )
        return with_fields(usage_trends(
            aggregate=aggregate.metrics, all_time=all_time.value, current_visitors=realtime.value, points=points,
            pages=pages, traffic_sources=sources, approximation=aggregate.approximation or note, top_n=TOP_N,
            identified_users=identified, codes=codes), UsageSection)

    async def _drilled(self, params: dict[str, Any]) -> UsageSection:
        """The plain section of the window, its user counts those of the users selected."""
        plain = (await self.section({"time_range": params["time_range"]})).body
        window = resolve(params["time_range"], datetime.fromtimestamp(self.context.clock(), timezone.utc),
                         self.plausible.tz)
        counts, _ = await self.identified.user_counts(window, self.drilldown.selection(params))
        breakdown = None
        if counts.by_value is not None:
            breakdown = self._breakdown(params, counts)
        return with_fields(plain, UsageSection, total_users=counts.total, active_users=counts.active,
                           basis="identified_users",
                           status_codes=tuple(code for code in plain.status_codes if code != UNAVAILABLE),
                           filters=self.drilldown.filters(params), breakdown=breakdown)

    def _breakdown(self, params: dict[str, Any], counts: UserCounts) -> Any:
        values = list(counts.by_value)
        total, active = zip(*counts.by_value.values()) if values else ((), ())
        return self.drilldown.breakdown(
            params, values, active, UsageGroup,
            lambda codes: GroupUsers(sum(total[code] for code in codes), sum(active[code] for code in codes)))

    def metric_params(self) -> list[dict[str, Any]]:
        plain = [{"time_range": window} for window in self.windows]
        return self.drilldown.with_published(plain) if self.identified.available else plain
