"""Feedback: satisfaction, sentiment and open items from the Feedback Service (docs/api.md#feedback).

Each window pages the list until its start (UTC calendar days, like the service's timestamps;
today included). The backlog of open items is one shared ``/stats`` request.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from ..analysis.feedback import FeedbackSummary, open_item_count, summarise_feedback
from ..concurrency import gather_or_cancel
from ..sources.feedback import FeedbackClient
from ..timeranges import TimeRange, iso_z, resolve
from .base import Area, Context
from .params import time_range


class FeedbackArea(Area):
    name = "feedback"
    path = "/api/v1/feedback"
    result = FeedbackSummary
    title = "Feedback"
    sources = ("feedback",)
    query = {"time_range": time_range("30d")}

    def __init__(self, context: Context, feedback: FeedbackClient | None, windows: tuple[TimeRange, ...],
                 top_categories: int) -> None:
        super().__init__(context)
        self.feedback = feedback
        self.windows = windows
        self.top_categories = top_categories

    async def compute(self, params: dict[str, Any]) -> FeedbackSummary:
        client = self.feedback
        now = datetime.fromtimestamp(self.context.clock(), timezone.utc)
        window = resolve(params["time_range"], now, timezone.utc)
        fetched, by_status = await gather_or_cancel(
            client.items_since(window.start),
            self.context.load(("feedback", "status_counts"), "feedback", client.status_counts),
        )
        summary = summarise_feedback(fetched.items, top_categories=self.top_categories)
        codes = (("malformed_items_skipped",) if fetched.skipped else ()) + (() if fetched.complete else ("truncated",))
        # open_items is the backlog, as analytics_feedback_open_items publishes it: every item still
        # open or in progress, whenever submitted (the window's share is open_items_in_window).
        return dataclasses.replace(summary, window_start=iso_z(window.start),
                                   open_items=open_item_count(by_status.value), skipped_items=fetched.skipped,
                                   status_codes=summary.status_codes + codes)

    def metric_params(self) -> list[dict[str, Any]]:
        return [{"time_range": window} for window in self.windows]
