"""Feature adoption: per-feature reach, weekly trends and the overall adoption series (docs/api.md#feature-adoption).

Inputs are counts the sources already produced; this module only divides, ranks and classifies.

Definitions (published with the result, see ``DEFINITIONS``):

* ``adoption_rate`` = unique users of the feature / active users of the platform in the same
  window, clipped to 0..1 (two counts from different queries can disagree by a user or two).
* The trend of a feature is :func:`~exporter.analysis.trends.classify_trend` over its unique
  users per whole week, oldest first (docs/methods.md#trends).
* ``adoption_trend`` is, for every whole week, the mean adoption rate of the observable features
  in that week: one number that rises when features reach a larger share of the week's users.
* ``most_adopted`` / ``least_adopted`` rank by adoption rate, then unique users, then name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from ..results import COUNT, FRACTION, USERS, Point, Timestamp, declare, status_codes
from ..timeranges import iso_z
from .breakdowns import GROUP_VALUE, breakdown_type
from .numbers import finite_or_none
from .trends import TrendDetail, TrendLabel, classify_trend
from .usage import APPROXIMATED, Basis

DEFINITIONS = {
    "adoption_rate": "unique users of the feature / active users in the same window, 0..1",
    "trend": "Mann-Kendall p < 0.05 and a Theil-Sen change of at least 10% over the feature's unique users "
             "per whole week; insufficient_data below 6 weeks or a median under 5 users a week",
    "adoption_trend": "per whole week: the mean over observable features of unique users of the feature / "
                      "active users that week",
}


@dataclass(frozen=True)
class FeatureUsage:
    """What the sources say about one configured feature; ``None`` means it cannot be observed."""

    name: str
    unique_users: float | None
    total_uses: float | None
    all_time_uses: float | None
    weekly_users: Sequence[float] | None  # one value per trend week, oldest first
    status_codes: tuple[str, ...] = ()
    first_seen: datetime | None = None  # only a per-event source knows these
    last_used: datetime | None = None

    def __post_init__(self) -> None:
        if self.observable and self.weekly_users is None:
            raise ValueError(f"feature {self.name!r} is observable but has no weekly series")

    @classmethod
    def unobservable(cls, name: str, reason: str) -> "FeatureUsage":
        """A feature no configured source can count; ``reason`` is its status code."""
        return cls(name, None, None, None, None, (reason,))

    @property
    def observable(self) -> bool:
        return self.unique_users is not None


@dataclass(frozen=True)
class FeatureUsers:
    """Distinct users per event name from the identified events, of the users a selection keeps;
    with a breakdown, ``by_value`` has them per value of the dimension (values none of whose users
    did any of the events are absent)."""

    users: dict[str, int]
    by_value: dict[str, dict[str, int]] | None = None


def first_complete_week(today: date, weeks: int) -> date:
    """The Monday that starts the first of the ``weeks`` whole weeks before ``today``'s week."""
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(weeks=weeks)


@dataclass(frozen=True)
class FeatureRow:
    """One configured feature: how many use it, how widely, and where it is heading."""

    feature_name: str = declare("the configured feature's name", key=True)
    total_uses: int | None = declare("uses (goal completions or events) in the window", COUNT)
    unique_users: int | None = declare("unique users of the feature in the window (see basis)", USERS)
    adoption_rate: float | None = declare("unique users of the feature / active users in the window, 0..1",
                                          FRACTION)
    all_time_uses: int | None = declare("uses since the site's stats start", COUNT)
    trend: TrendLabel = declare("direction of the weekly unique users")
    trend_detail: TrendDetail = declare("the evidence behind the trend label")
    weekly_users: tuple[Point, ...] = declare("unique users of the feature per whole week", USERS)
    first_seen: Timestamp | None = declare("first use (only an identified events source knows it)")
    last_used: Timestamp | None = declare("latest use (only an identified events source knows it)")
    status_codes: tuple[str, ...] = status_codes()


@dataclass(frozen=True)
class FeatureAdoption:
    """Reach and trend of every configured feature."""

    total_features: int = declare("configured features", COUNT)
    features: tuple[FeatureRow, ...] = declare("in configuration order")
    most_adopted: str | None = declare("highest adoption rate (then unique users, then name)")
    least_adopted: str | None = declare("lowest adoption rate")
    adoption_trend: tuple[Point, ...] = declare("mean adoption rate of the observable features per whole week",
                                                FRACTION)
    active_users: int = declare("active users in the window: the denominator of adoption_rate", USERS)
    definitions: dict[str, str] = declare("how each figure is defined")
    status_codes: tuple[str, ...] = status_codes()
    basis: Basis = declare("where unique users come from", default="plausible_visitors")
    unknown_goals: tuple[str, ...] = declare("configured goals Plausible does not know", default=())
    approximation: str | None = declare("how the figures are approximated (status approximated_range)",
                                        omit_if_none=True)


@dataclass(frozen=True)
class GroupFeature:
    """One feature's reach among a group's users."""

    feature_name: str = declare("the configured feature's name", key=True)
    unique_users: int | None = declare("the group's users of the feature in the window (null: the feature has no "
                                       "event to count them by)", USERS)
    adoption_rate: float | None = declare("unique users of the feature / the group's active users, 0..1", FRACTION)


@dataclass(frozen=True)
class GroupAdoption:
    """A group's reach of every feature."""

    features: tuple[GroupFeature, ...] = declare("in configuration order")
    most_adopted: str | None = declare("highest adoption rate in the group (then unique users, then name)")
    least_adopted: str | None = declare("lowest adoption rate in the group")


@dataclass(frozen=True)
class FeatureGroup:
    """One value of the breakdown's dimension: its users' reach of the features."""

    value: str = declare(GROUP_VALUE, key=True)
    users: int = declare("the group's users active in the window: the denominator of its adoption rates", USERS)
    adoption: GroupAdoption = declare("the group's adoption", flatten=True)


FeatureBreakdown = breakdown_type(FeatureGroup)
FILTERED_REACH = ("the filters applied, by dimension: active_users and each feature's unique_users and adoption_rate "
                  "count the users with one of these values; uses, trends and weekly series are the whole site's")


@dataclass(frozen=True)
class FeatureAdoptionSection(FeatureAdoption):
    """Feature adoption; with filters or a breakdown, the reach among the users selected."""

    filters: dict[str, tuple[str, ...]] | None = declare(FILTERED_REACH, omit_if_none=True)
    breakdown: FeatureBreakdown | None = declare("the reach per value of a dimension", omit_if_none=True)


def selected_reach(whole: FeatureAdoption, unique_users: Mapping[str, int | None], active_users: int
                   ) -> FeatureAdoption:
    """``whole`` with the reach of selected users: ``unique_users`` by feature name (None for a
    feature without an event, which only the whole site's goal counts can tell) and their
    ``active_users``. A feature with no event to count the selected users by says so
    (``needs_events_source``)."""
    rows = []
    for row in whole.features:
        users = unique_users.get(row.feature_name)
        rate, codes = _adoption_rate(users, active_users)
        kept = [code for code in row.status_codes if code not in ("no_active_users", "needs_events_source")]
        missing = ("needs_events_source",) if users is None else ()
        rows.append(dataclasses.replace(row, unique_users=users, adoption_rate=rate,
                                        status_codes=(*kept, *codes, *missing)))
    most, least = _extremes(rows)
    return dataclasses.replace(whole, features=tuple(rows), most_adopted=most, least_adopted=least,
                               active_users=active_users)


def group_adoption(names: Sequence[str], unique_users: Mapping[str, int | None], active_users: int) -> GroupAdoption:
    """A group's reach of the features ``names`` (configuration order)."""
    rows = [GroupFeature(name, unique_users.get(name), _adoption_rate(unique_users.get(name), active_users)[0])
            for name in names]
    most, least = _extremes(rows)
    return GroupAdoption(tuple(rows), most, least)


def feature_adoption(features: Sequence[FeatureUsage], *, active_users: float, week_starts: Sequence[datetime],
                     weekly_active: Sequence[float], basis: Basis = "plausible_visitors",
                     unknown_goals: Sequence[str] = (), approximation: str | None = None,
                     codes: Sequence[str] = ()) -> FeatureAdoption:
    """The feature-adoption body for ``features`` in configuration order.

    ``active_users`` is the window's active users; ``week_starts`` (tz-aware) and
    ``weekly_active`` describe the trend weeks, which every ``weekly_users`` series must match.
    An ``adoption_trend`` value is null when no feature can be observed
    (``no_observable_features``) or the week had no active users (``weeks_without_active_users``).
    ``basis``, ``unknown_goals``, ``approximation`` and ``codes`` (further status codes) say what
    the sources could and could not tell.
    """
    for feature in features:
        if feature.weekly_users is not None and len(feature.weekly_users) != len(week_starts):
            raise ValueError(f"feature {feature.name!r}: {len(feature.weekly_users)} weekly values "
                             f"for {len(week_starts)} weeks")
    rows = [_feature_row(feature, active_users, week_starts) for feature in features]
    observable = [feature for feature in features if feature.observable]
    status_codes = []
    if not observable:
        status_codes.append("no_observable_features")
    elif any(active <= 0 for active in weekly_active):
        status_codes.append("weeks_without_active_users")
    status_codes += codes
    if unknown_goals:
        status_codes.append("unknown_goals")
    if approximation:
        status_codes.append(APPROXIMATED)
    most, least = _extremes(rows)
    return FeatureAdoption(
        total_features=len(rows),
        features=tuple(rows),
        most_adopted=most,
        least_adopted=least,
        adoption_trend=_adoption_trend(observable, week_starts, weekly_active),
        active_users=int(active_users),
        definitions=DEFINITIONS,
        status_codes=tuple(status_codes),
        basis=basis,
        unknown_goals=tuple(sorted(unknown_goals)),
        approximation=approximation or None,
    )


def _extremes(rows: Sequence[FeatureRow | GroupFeature]) -> tuple[str | None, str | None]:
    """The most and the least adopted features' names."""
    ranked = sorted((row for row in rows if row.adoption_rate is not None),
                    key=lambda row: (-row.adoption_rate, -row.unique_users, row.feature_name))
    return (ranked[0].feature_name, ranked[-1].feature_name) if ranked else (None, None)


def _adoption_rate(unique_users: float | None, active_users: float) -> tuple[float | None, tuple[str, ...]]:
    """The adoption rate, and why it is null when it is."""
    if unique_users is None:
        return None, ()
    if active_users <= 0:
        return None, ("no_active_users",)
    return float(np.clip(unique_users / active_users, 0.0, 1.0)), ()


def _feature_row(feature: FeatureUsage, active_users: float, week_starts: Sequence[datetime]) -> FeatureRow:
    rate, codes = _adoption_rate(feature.unique_users, active_users)
    status_codes = list(feature.status_codes) + list(codes)
    if feature.first_seen is None and "never_used" not in status_codes:  # only a per-event source knows them
        status_codes.append("usage_dates_unavailable")
    trend = classify_trend(feature.weekly_users or ())
    return FeatureRow(
        feature_name=feature.name,
        total_uses=_count(feature.total_uses),
        unique_users=_count(feature.unique_users),
        adoption_rate=rate,
        all_time_uses=_count(feature.all_time_uses),
        trend=trend.label,
        trend_detail=trend.detail(),
        weekly_users=tuple(Point(iso_z(start), _count(value))
                           for start, value in zip(week_starts, feature.weekly_users or ())),
        first_seen=iso_z(feature.first_seen),
        last_used=iso_z(feature.last_used),
        status_codes=tuple(status_codes),
    )


def _adoption_trend(features: Sequence[FeatureUsage], week_starts: Sequence[datetime],
                    weekly_active: Sequence[float]) -> tuple[Point, ...]:
    """Mean weekly adoption rate of ``features``; ``None`` for a week without active users."""
    if len(weekly_active) != len(week_starts):
        raise ValueError(f"{len(weekly_active)} weekly active-user counts for {len(week_starts)} weeks")
    points = []
    for week, (start, active) in enumerate(zip(week_starts, weekly_active)):
        value = None
        if features and active > 0:
            rates = np.clip([feature.weekly_users[week] / active for feature in features], 0.0, 1.0)
            value = finite_or_none(np.mean(rates))
        points.append(Point(iso_z(start), value))
    return tuple(points)


def _count(value: float | None) -> int | None:
    return None if value is None else int(round(value))
