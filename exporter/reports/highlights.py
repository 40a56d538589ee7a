"""What a report puts first: headline figures and their change, experiment recommendations, anomalies.

Shared by the PDF (each part's headline) and the email summary (every part's headline against
the previous period). The headline fields of the known sections are listed here; a section not
listed (a new one) shows every figure of the whole section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .figures import Figure, Part, Row, parts
from .formatting import format_change, format_value, label

HEADLINES: dict[str, tuple[str, ...]] = {
    "usage_trends": ("active_users", "total_users", "page_views", "visits", "avg_session_duration", "bounce_rate"),
    "feature_adoption": ("active_users", "total_features"),
    "experiment_results": (),  # the recommendations are its headline
    "feedback": ("total", "average_rating", "csat", "nps_5star.score", "open_items"),
    "user_segments": ("total_users",),
    "funnels": ("overall_conversion_rate", "total_users", "completed_users", "median_completion_time"),
}
EXPERIMENTS = "experiment_results"
ANOMALIES = "anomalies"
# Decisions to act on come first; experiments still collecting data after them.
RECOMMENDATION_ORDER = ("ship", "roll_back", "investigate_guardrail", "investigate_srm", "keep_running",
                        "inconclusive", "insufficient_data", "no_data", "no_comparison")
NOT_STARTED = "draft"


@dataclass(frozen=True)
class Headline:
    """A headline figure of one part, with the same figure of the previous period if there is one."""

    part: Part
    figure: Figure
    previous: int | float | None

    @property
    def value(self) -> str:
        return format_value(self.figure.value, self.figure.unit)

    @property
    def previous_value(self) -> str | None:
        return None if self.previous is None else format_value(self.previous, self.figure.unit)

    @property
    def change(self) -> str | None:
        return None if self.previous is None else format_change(self.figure.value, self.previous, self.figure.unit)


@dataclass(frozen=True)
class Recommendation:
    experiment: str
    status: str
    recommendation: str
    text: str


@dataclass(frozen=True)
class Anomaly:
    series: str
    timestamp: str
    value: float
    expected: float
    lower: float
    upper: float
    direction: str


def part_headline(part: Part) -> list[Figure]:
    return part.headline(HEADLINES.get(part.section))


def headlines(dashboard: Mapping[str, Any], rows: Iterable[Row],
              previous: tuple[Mapping[str, Any], Iterable[Row]] | None = None) -> list[Headline]:
    """Every part's headline figures, each with its value in ``previous`` (a dashboard and its
    rows) when that has the same figure."""
    earlier: dict[tuple[str, str | None, str], int | float] = {}
    if previous is not None:
        for part in parts(*previous):
            earlier.update({(part.section, part.key, figure.name): figure.value for figure in part_headline(part)})
    return [Headline(part, figure, earlier.get((part.section, part.key, figure.name)))
            for part in parts(dashboard, rows) for figure in part_headline(part)]


def recommendations(dashboard: Mapping[str, Any]) -> list[Recommendation]:
    """The experiments' recommendations, decisions first; drafts (not started) left out."""
    experiments = dashboard.get(EXPERIMENTS, {}).get("experiments") or []
    found = [Recommendation(str(item.get("experiment_name") or item.get("experiment_id")), str(item.get("status")),
                            str(item.get("recommendation")), str(item.get("recommendation_text") or ""))
             for item in experiments if item.get("status") != NOT_STARTED]
    rank = {name: position for position, name in enumerate(RECOMMENDATION_ORDER)}
    return sorted(found, key=lambda item: rank.get(item.recommendation, len(rank)))


def experiment_names(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Experiment id -> name, to label the experiments' figures (their dimension is the id)."""
    experiments = dashboard.get(EXPERIMENTS, {}).get("experiments") or []
    return {item["experiment_id"]: item["experiment_name"] for item in experiments
            if item.get("experiment_id") and item.get("experiment_name")}


def anomalies(dashboard: Mapping[str, Any]) -> list[Anomaly] | None:
    """The anomalies section's flagged days, newest first; None when the dashboard has no such
    section (no forecasting) or could not serve it."""
    section = dashboard.get(ANOMALIES)
    if not isinstance(section, Mapping) or "error" in section:
        return None
    return [Anomaly(str(item["series"]), str(item["timestamp"]), item["value"], item["expected"], item["lower"],
                    item["upper"], str(item.get("direction", "")))
            for item in section.get("anomalies") or []]


def unavailable(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(part title, reason)`` of every part that could not be served."""
    return [(title(part), part.error) for part in parts(dashboard, ()) if part.error]


def title(part: Part) -> str:
    own = label(part.section)
    return own if part.key is None else f"{own}: {part.key}"
