"""Usage trends: who is active and what they look at, from Plausible (contract §4.2)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..analysis.usage import usage_trends
from ..collectors.usage import UsageCollector
from ..concurrency import gather_or_cancel
from ..timeranges import TimeRange, resolve
from .base import Area
from .identified import identified_user_counts

TOP_N = 10


class UsageArea(Area):
    name = "usage_trends"
    sources = ("plausible",)

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        if service.events is not None:  # the user counts come from the identified events
            self.sources = (*self.sources, "events")

    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        client = self.service.plausible
        now = datetime.fromtimestamp(self.service.clock(), timezone.utc)
        window = resolve(params["time_range"], now, client.tz)
        # Everything of one window is asked concurrently; the realtime and all-time figures are
        # shared by every window, so they are memoized once for all of them.
        aggregate, points, (pages, note), (sources, _), realtime, all_time, (identified, codes) = await gather_or_cancel(
            client.aggregate(window),
            client.timeseries(window),
            client.breakdown(window, "event:page", limit=TOP_N),
            client.breakdown(window, "visit:source", limit=TOP_N),
            self.service.load(("plausible", "realtime"), "plausible", lambda: client.realtime_visitors(now)),
            self.service.load(("plausible", "all_time"), "plausible", lambda: client.all_time(now.date())),
            identified_user_counts(self.service, window),
        )
        body = usage_trends(aggregate=aggregate.metrics, all_time=all_time.value, current_visitors=realtime.value,
                            points=points, pages=pages, traffic_sources=sources,
                            approximation=aggregate.approximation or note, top_n=TOP_N, identified_users=identified)
        body["status_codes"].extend(codes)
        return body

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": tr} for tr in self.service.config.metrics.usage_ranges]

    def collector(self) -> UsageCollector:
        return UsageCollector(self)

    @staticmethod
    def params(time_range: TimeRange) -> dict[str, Any]:
        return {"time_range": time_range}
