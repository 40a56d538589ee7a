"""Feedback: satisfaction, sentiment and open items from the Feedback Service (contract §4.6).

Each window pages the list until its start (UTC calendar days, like the service's timestamps;
today included). The all-time count of open items is one shared ``/stats`` request.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..analysis.feedback import summarise_feedback
from ..collectors.feedback import FeedbackCollector
from ..concurrency import gather_or_cancel
from ..timeranges import iso_z, resolve
from .base import Area


class FeedbackArea(Area):
    name = "feedback"
    sources = ("feedback",)

    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        client = self.service.feedback
        now = datetime.fromtimestamp(self.service.clock(), timezone.utc)
        window = resolve(params["time_range"], now, timezone.utc)
        fetched, open_items = await gather_or_cancel(
            client.items_since(window.start),
            self.service.load(("feedback", "open_items"), "feedback", client.open_items),
        )
        body = summarise_feedback(fetched.items, top_categories=self.service.config.metrics.feedback_top_categories)
        body["window_start"] = iso_z(window.start)
        # The backlog, as analytics_feedback_open_items publishes it: every item still open or in
        # progress, whenever submitted (the window's share is open_items_in_window).
        body["open_items"] = open_items.value
        body["skipped_items"] = fetched.skipped
        if fetched.skipped:
            body["status_codes"].append("malformed_items_skipped")
        if not fetched.complete:
            body["status_codes"].append("truncated")
        return body

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": tr} for tr in self.service.config.metrics.feedback_ranges]

    def collector(self) -> FeedbackCollector:
        return FeedbackCollector(self)
