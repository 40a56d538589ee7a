"""Feedback metrics (docs/metrics.md#feedback) from the feedback snapshots of each configured window.

Category labels come from free text, so they are the capped ``by_category`` rows of the snapshot
(the top N by volume plus ``other``); no comment, email or other free text reaches a label.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from ..timeranges import window_label
from .base import AreaCollector, helptext

WINDOWED = (
    ("analytics_feedback_average_rating", "average_rating", "Mean rating (1-5 stars) of feedback in the window."),
    ("analytics_feedback_csat_ratio", "csat", "Share of 4-5 star ratings in the window, 0..1."),
)


class FeedbackCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl = self.ttl
        source = "the Feedback Service"
        responses = GaugeMetricFamily(
            "analytics_feedback_responses", helptext("Feedback items in the window by rating.", source, ttl),
            labels=["window", "rating"])
        windowed = {name: GaugeMetricFamily(name, helptext(text, source, ttl), labels=["window"])
                    for name, _, text in WINDOWED}
        sentiment = GaugeMetricFamily(
            "analytics_feedback_sentiment_compound",
            helptext("Mean sentiment compound score (-1..1) of feedback in the window.", source, ttl),
            labels=["window"])
        categories = GaugeMetricFamily(
            "analytics_feedback_category_responses",
            helptext("Feedback items in the window by category: the largest categories, the rest as 'other'.",
                     source, ttl),
            labels=["window", "category"])
        open_items = GaugeMetricFamily(
            "analytics_feedback_open_items",
            helptext("Feedback items open or in progress, whenever submitted.", source, ttl))
        families = [responses, *windowed.values(), sentiment, categories, open_items]
        if not with_samples:
            return families
        snapshots = [(window_label(params["time_range"]), body) for params, body in self.published()]
        for label, body in snapshots:
            for rating, count in body.rating_distribution.items():
                responses.add_metric([label, rating], count)
            for name, field, _ in WINDOWED:
                if getattr(body, field) is not None:
                    windowed[name].add_metric([label], getattr(body, field))
            if body.sentiment.average_compound is not None:
                sentiment.add_metric([label], body.sentiment.average_compound)
            for row in body.by_category:
                categories.add_metric([label, row.category], row.count)
        if snapshots:
            open_items.add_metric([], snapshots[0][1].open_items)
        return [family for family in families if family.samples]
