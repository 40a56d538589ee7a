"""Behavioural user segments, engagement score and power-user curve (docs/methods.md#segments-and-engagement).

Days are UTC calendar days counted back from the day holding ``now``: day 0 is today, day 1
yesterday. Events after ``now`` are ignored. An *active day* is a day with at least one
meaningful event (a configurable set of event names; default: every event).

Per user, as of ``now``:

- ``L28``: active days among days 0-27; ``L28_prev``: among days 28-55.
- ``R``: days since the last active day (0 when active today), from the whole log.
- ``B``: distinct features used in days 0-27 (``feature_events`` maps event name -> feature;
  default: each meaningful event name is its own feature).
- ``age``: days since the user's first event of any kind.
- ``gap``: median distance in days between consecutive active days within days 0-89 (undefined
  with fewer than two; it is only consulted for ``at_risk``, whose ``L28_prev >= 4`` guarantees it).

The population is every user with at least one meaningful event up to ``now``; users only ever
seen through non-meaningful events have never been active and belong to no segment.

Rules, first match wins (thresholds in :class:`SegmentThresholds`):

1. ``new``: age <= 14.
2. ``churned``: R > 56. ``dormant``: 28 <= R <= 56 -- not ``28 < R``: with R
   counted from 0 the L28 window is R = 0..27, so R = 28 already means "no active day in 28
   days" and would otherwise match no rule.
3. ``at_risk``: L28_prev >= 4 and (R >= max(14, 3 x gap) or L28 <= 0.5 x L28_prev).
4. ``power``: L28 >= 12 and B >= 3.
5. ``core``: L28 >= 6 (not power: L28 6-11, or more days with fewer than 3 features).
6. ``casual``: everyone left, who has L28 1-5 (R <= 27 implies L28 >= 1).

Together the rules put every user of the population in exactly one segment.

Engagement score 0-100: ``100 (0.40 F + 0.25 Rs + 0.20 Bs + 0.15 Ts)`` with
``F = min(L28/16, 1)``, ``Rs = exp(-R/7)``, ``Bs = min(B/4, 1)`` and
``Ts = clip(0.5 + 0.5 (L28 - L28_prev) / max(L28_prev, 1), 0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from exporter.analysis.breakdowns import FILTERS, GROUP_VALUE, breakdown_type
from exporter.results import COUNT, DAYS, PERCENT, USERS, Timestamp, Unit, declare, status_codes

SEGMENTATION_METHOD = "behavioral"
MEASURES = ("users", "l28", "l28_prev", "recency", "breadth", "age", "gap")
SegmentName = Literal["power", "core", "casual", "new", "at_risk", "dormant", "churned"]
SEGMENT_NAMES: tuple[SegmentName, ...] = ("power", "core", "casual", "new", "at_risk", "dormant", "churned")

DAY_SECONDS = 86_400
WINDOW_DAYS = 28
LOOKBACK_DAYS = 90



@dataclass(frozen=True)
class SegmentThresholds:
    """The configurable numbers of the segment rules (defaults: docs/methods.md#segment-rules).

    Every comparison is inclusive: the "R > 56" of churned is ``R >= 57`` here.
    """

    new_max_age_days: int = 14
    dormant_min_recency_days: int = 28
    churned_min_recency_days: int = 57  # "R > 56"
    at_risk_min_previous_active_days: int = 4
    at_risk_min_recency_days: int = 14
    at_risk_gap_multiplier: float = 3.0
    at_risk_max_activity_ratio: float = 0.5
    power_min_active_days: int = 12
    power_min_features: int = 3
    core_min_active_days: int = 6

    def __post_init__(self) -> None:
        # A user inactive for dormant_min_recency_days must have L28 = 0, or a user could be
        # neither dormant nor active enough for casual.
        if not 1 <= self.dormant_min_recency_days <= WINDOW_DAYS:
            raise ValueError(f"dormant_min_recency_days must be within 1..{WINDOW_DAYS}")
        if self.churned_min_recency_days < self.dormant_min_recency_days:
            raise ValueError("churned_min_recency_days must not be below dormant_min_recency_days")
        if not 1 <= self.core_min_active_days <= self.power_min_active_days <= WINDOW_DAYS:
            raise ValueError("need 1 <= core_min_active_days <= power_min_active_days <= 28")
        numbers = asdict(self).values()
        if any(value < 0 for value in numbers):
            raise ValueError("segment thresholds must not be negative")


@dataclass(frozen=True)
class UserActivity:
    """Per-user measures for the population (users with a meaningful event up to now).

    All arrays are aligned with ``users`` (user codes, ascending). ``gap`` is NaN where fewer
    than two active days fall in the 90-day lookback.
    """

    users: np.ndarray
    l28: np.ndarray
    l28_prev: np.ndarray
    recency: np.ndarray
    breadth: np.ndarray
    age: np.ndarray
    gap: np.ndarray
    groups: np.ndarray | None = None  # with a breakdown: each user's value code (``values[code]``)
    values: tuple[str, ...] = ()

    def split(self, group_of_user: np.ndarray, n_groups: int) -> list[UserActivity]:
        """The measures of each group's users (``group_of_user``: a group index per user): one
        stable sort by group, then contiguous slices, rather than a pass per group."""
        order = np.argsort(group_of_user, kind="stable")
        bounds = np.cumsum(np.bincount(group_of_user, minlength=n_groups))[:-1]
        parts = {name: np.split(getattr(self, name)[order], bounds) for name in MEASURES}
        return [UserActivity(**{name: parts[name][g] for name in MEASURES}) for g in range(n_groups)]


@dataclass(frozen=True)
class Characteristics:
    """Medians of the rule measures over a segment's users (null for an empty segment)."""

    median_active_days_28d: float | None = declare("L28: active days in days 0-27", DAYS)
    median_active_days_previous_28d: float | None = declare("L28_prev: active days in days 28-55", DAYS)
    median_days_since_active: float | None = declare("R: days since the last active day", DAYS)
    median_features_used_28d: float | None = declare("B: distinct features used in days 0-27", COUNT)
    median_age_days: float | None = declare("days since the first event of any kind", DAYS)


@dataclass(frozen=True)
class SegmentRow:
    """One behavioural segment."""

    segment_name: SegmentName = declare("the segment", key=True)
    user_count: int = declare("users in the segment", USERS)
    percentage: float | None = declare("share of the population, percent 0..100", PERCENT)
    avg_engagement: float | None = declare("mean engagement score of the segment's users, 0..100",
                                           Unit("score", 0, 100))
    characteristics: Characteristics = declare("medians of the rule measures")


@dataclass(frozen=True)
class CurvePoint:
    """Users by active days in the last 28 days."""

    days_active: int = declare("active days in days 0-27", key=True)
    users: int = declare("users with that many active days", USERS)


@dataclass(frozen=True)
class UserSegments:
    """Every user of the population in one behavioural segment, as of ``last_updated``."""

    total_users: int = declare("the population: users with a meaningful event up to last_updated", USERS)
    segments: tuple[SegmentRow, ...] = declare("every segment, in rule order")
    segmentation_method: Literal["behavioral"] = declare("how users are segmented")
    definitions: dict[str, Any] = declare("the measures, rules, thresholds and score, as applied")
    power_user_curve: tuple[CurvePoint, ...] = declare("users by active days in the last 28 days, 0..28")
    last_updated: Timestamp = declare("the instant the segments are computed as of")
    status_codes: tuple[str, ...] = status_codes()
    time_range_note: str | None = declare("why time_range does not change the segments", omit_if_none=True)


@dataclass(frozen=True)
class SegmentGroup:
    """One value of the breakdown's dimension: the segments of its users."""

    value: str = declare(GROUP_VALUE, key=True)
    users: int = declare("the group's population: its users with a meaningful event", USERS)
    report: UserSegments = declare("the group's segments", flatten=True)


SegmentBreakdown = breakdown_type(SegmentGroup)


@dataclass(frozen=True)
class SegmentsSection(UserSegments):
    """The segments of the users the filters keep; by group with a breakdown."""

    filters: dict[str, tuple[str, ...]] | None = declare(FILTERS, omit_if_none=True)
    breakdown: SegmentBreakdown | None = declare("the segments per value of a dimension", omit_if_none=True)


def segments_report(
    activity: UserActivity,
    *,
    now: int,
    thresholds: SegmentThresholds = SegmentThresholds(),
    meaningful_events: Collection[str] | None = None,
    feature_events: Mapping[str, str] | None = None,
) -> UserSegments:
    """The segments report from per-user measures, whichever backend computed them. The numbers
    do not depend on the order of the users."""
    segment = assign_segments(activity, thresholds)
    score = engagement_score(activity)
    total = len(activity.users)

    segments = []
    for index, name in enumerate(SEGMENT_NAMES):
        members = segment == index
        count = int(members.sum())
        segments.append(SegmentRow(
            segment_name=name,
            user_count=count,
            percentage=100.0 * count / total if total else None,
            # fsum is exact, so the mean does not depend on the order of the users as np.mean would.
            avg_engagement=math.fsum(score[members]) / count if count else None,
            characteristics=_characteristics(activity, members),
        ))
    curve = np.bincount(activity.l28, minlength=WINDOW_DAYS + 1)
    return UserSegments(
        total_users=total,
        segments=tuple(segments),
        segmentation_method=SEGMENTATION_METHOD,
        definitions=_definitions(thresholds, meaningful_events, feature_events),
        power_user_curve=tuple(CurvePoint(days, int(users)) for days, users in enumerate(curve.tolist())),
        last_updated=_iso_utc(now),
        status_codes=() if total else ("no_users",),
    )


def assign_segments(activity: UserActivity, thresholds: SegmentThresholds) -> np.ndarray:
    """Index into :data:`SEGMENT_NAMES` per user, by the rules in order (first match wins)."""
    t = thresholds
    recency, l28, l28_prev = activity.recency, activity.l28, activity.l28_prev
    # gap is NaN (fewer than two active days) only where L28_prev >= 4 fails anyway.
    with np.errstate(invalid="ignore"):
        overdue = np.maximum(t.at_risk_min_recency_days, t.at_risk_gap_multiplier * activity.gap)
        stalled = recency >= overdue
    rules = [
        ("new", activity.age <= t.new_max_age_days),
        ("churned", recency >= t.churned_min_recency_days),
        ("dormant", recency >= t.dormant_min_recency_days),
        ("at_risk", (l28_prev >= t.at_risk_min_previous_active_days)
         & (stalled | (l28 <= t.at_risk_max_activity_ratio * l28_prev))),
        ("power", (l28 >= t.power_min_active_days) & (activity.breadth >= t.power_min_features)),
        ("core", l28 >= t.core_min_active_days),
        ("casual", np.ones(len(recency), dtype=bool)),
    ]
    return np.select(
        [condition for _, condition in rules],
        [SEGMENT_NAMES.index(name) for name, _ in rules],
    )


def engagement_score(activity: UserActivity) -> np.ndarray:
    """Engagement 0-100 per user (formula in the module docstring)."""
    frequency = np.minimum(activity.l28 / 16.0, 1.0)
    recency = np.exp(-activity.recency / 7.0)
    breadth = np.minimum(activity.breadth / 4.0, 1.0)
    trend = np.clip(
        0.5 + 0.5 * (activity.l28 - activity.l28_prev) / np.maximum(activity.l28_prev, 1), 0.0, 1.0
    )
    return 100.0 * (0.40 * frequency + 0.25 * recency + 0.20 * breadth + 0.15 * trend)


def _characteristics(activity: UserActivity, members: np.ndarray) -> Characteristics:
    measures = (activity.l28, activity.l28_prev, activity.recency, activity.breadth, activity.age)
    if not members.any():
        return Characteristics(*(None for _ in measures))
    return Characteristics(*(float(np.median(values[members])) for values in measures))


def _definitions(
    thresholds: SegmentThresholds,
    meaningful_events: Collection[str] | None,
    feature_events: Mapping[str, str] | None,
) -> dict:
    t = thresholds
    return {
        "day": "UTC calendar day; day 0 is the day of last_updated",
        "active_day": "a day with at least one meaningful event",
        "meaningful_events": (
            "all events" if meaningful_events is None else sorted(meaningful_events)
        ),
        "features": (
            "each meaningful event name" if feature_events is None else dict(feature_events)
        ),
        "population": "users with at least one meaningful event up to last_updated",
        "measures": {
            "L28": "active days in days 0-27",
            "L28_prev": "active days in days 28-55",
            "R": "days since the last active day (0 = active today)",
            "B": "distinct features used in days 0-27",
            "age": "days since the first event of any kind",
            "gap": "median days between consecutive active days in days 0-89",
        },
        "rules": [
            {"segment": "new", "rule": f"age <= {t.new_max_age_days}"},
            {"segment": "churned", "rule": f"R >= {t.churned_min_recency_days}"},
            {"segment": "dormant", "rule": f"R >= {t.dormant_min_recency_days}"},
            {"segment": "at_risk", "rule": (
                f"L28_prev >= {t.at_risk_min_previous_active_days} and "
                f"(R >= max({t.at_risk_min_recency_days}, {t.at_risk_gap_multiplier:g} x gap) or "
                f"L28 <= {t.at_risk_max_activity_ratio:g} x L28_prev)"
            )},
            {"segment": "power", "rule": (
                f"L28 >= {t.power_min_active_days} and B >= {t.power_min_features}"
            )},
            {"segment": "core", "rule": f"L28 >= {t.core_min_active_days}"},
            {"segment": "casual", "rule": "any other user (L28 >= 1)"},
        ],
        "rule_order": "first matching rule wins, in the order listed",
        "thresholds": asdict(thresholds),
        "engagement_score": (
            "100 x (0.40 F + 0.25 Rs + 0.20 Bs + 0.15 Ts); F = min(L28/16, 1), Rs = exp(-R/7), "
            "Bs = min(B/4, 1), Ts = clip(0.5 + 0.5 (L28 - L28_prev) / max(L28_prev, 1), 0, 1)"
        ),
    }


def _iso_utc(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
