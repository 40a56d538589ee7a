"""Usage trends: who is active and what they look at, from Plausible (docs/api.md#usage-trends)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..analysis.usage import UsageTrends, usage_trends
from ..concurrency import gather_or_cancel
from ..sources.plausible import PlausibleClient
from ..timeranges import TimeRange, resolve
from .base import Area, Context
from .identified import IdentifiedUsers
from .params import time_range

TOP_N = 10


class UsageArea(Area):
    name = "usage_trends"
    path = "/api/v1/usage-trends"
    result = UsageTrends
    title = "Usage trends"
    query = {"time_range": time_range("7d")}

    def __init__(self, context: Context, plausible: PlausibleClient | None, identified: IdentifiedUsers,
                 windows: tuple[TimeRange, ...]) -> None:
        super().__init__(context)
        self.plausible = plausible
        self.identified = identified
        self.windows = windows
        # The user counts come from the identified events when there are any.
        self.sources = ("plausible", "events") if identified.available else ("plausible",)

    async def compute(self, params: dict[str, Any]) -> UsageTrends:
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
        return usage_trends(aggregate=aggregate.metrics, all_time=all_time.value, current_visitors=realtime.value,
                            points=points, pages=pages, traffic_sources=sources,
                            approximation=aggregate.approximation or note, top_n=TOP_N, identified_users=identified,
                            codes=codes)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": window} for window in self.windows]
