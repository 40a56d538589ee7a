"""Retention cohorts, the user lifecycle and stickiness from identified events (``docs/retention.md``).

Semantics are those of PostHog's retention, lifecycle and stickiness insights:

- **Intervals** are UTC calendar days, or ISO weeks from Monday 00:00 UTC. An interval is
  *listed* when its start lies inside the range ``[range_start, range_end)``; the last one listed
  may still be in progress (``complete: false``). Only events before ``range_end`` are read.
- **Retention, first_time**: a user's cohort is the interval of the user's *first-ever* start
  event over the whole history, not the first one inside the range (which would make every
  existing user look new); users whose first start event lies before the first listed interval
  belong to no cohort. **recurring**: a user joins the cohort of every listed interval in which
  they did the start event. ``retained[k]`` counts the cohort's members who did the return event
  in interval ``cohort + k`` exactly; ``retained[0]`` is the cohort's size.
- **Lifecycle** (activity = any event), per listed interval: ``new`` (first-ever event in it),
  ``returning`` (active in it and in the interval before), ``resurrecting`` (active in it, not in
  the one before, active at some earlier time), ``dormant`` (active in the interval before, not in
  it; a positive count). ``quick_ratio = (new + resurrecting) / dormant``.
- **Stickiness** over the 28 complete UTC days before the day holding ``now``: the average number
  of distinct users per day (DAU), distinct users in the last 7 (WAU) and all 28 (MAU) of them.

The counts are computed by the events backends -- from the log in memory
(:mod:`exporter.events.log_retention`) or in SQL (:mod:`exporter.events.clickhouse_retention`) --
as :class:`RetentionCounts`, :class:`LifecycleCounts` and :class:`StickinessCounts`, which carry
a leading *group* axis: one group for a plain query, one per breakdown value otherwise. This
module turns one group's counts into the typed report.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from exporter.analysis.breakdowns import FILTERS, GROUP_VALUE, breakdown_type
from exporter.analysis.segments import DAY_SECONDS
from exporter.results import FRACTION, USERS, Unit, declare
from exporter.timeranges import iso_z

Interval = Literal["day", "week"]
Mode = Literal["first_time", "recurring"]
INTERVALS: tuple[str, ...] = typing.get_args(Interval)
MODES: tuple[str, ...] = typing.get_args(Mode)

WEEK_SECONDS = 7 * DAY_SECONDS
# Interval index of epoch second t: (t + offset) // length. 1970-01-01 was a Thursday, so shifting
# by three days makes week boundaries fall on Mondays 00:00 UTC (ISO weeks).
_LENGTH_AND_OFFSET = {"day": (DAY_SECONDS, 0), "week": (WEEK_SECONDS, 3 * DAY_SECONDS)}

STICKINESS_DAYS = 28
STICKINESS_WEEK_DAYS = 7

RATIO = Unit("ratio", 0)  # a non-negative ratio of two counts, not bounded by 1


class RangeTooShort(ValueError):
    """The time range is shorter than one interval (the API answers 400)."""


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """ValueError naming the valid values unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{value!r} is not a valid {name}; valid: {', '.join(choices)}")


# --- the intervals --------------------------------------------------------------------------

@dataclass(frozen=True)
class IntervalGrid:
    """The intervals listed for a range: ``count`` of them from index ``first``, the first
    ``complete`` of which have ended. ``end`` is the range's end: events from ``end`` on are not read.

    Indices count intervals since the epoch (see :func:`interval_index`); positions count the
    listed intervals from 0, and position -1 is the interval just before the first listed.
    """

    interval: Interval
    first: int
    count: int
    complete: int
    end: int

    @property
    def length(self) -> int:
        return _LENGTH_AND_OFFSET[self.interval][0]

    @property
    def offset(self) -> int:
        return _LENGTH_AND_OFFSET[self.interval][1]

    def start(self, position: int) -> int:
        """Epoch seconds at which the listed interval at ``position`` starts."""
        return (self.first + position) * self.length - self.offset

    def starts_iso(self) -> list[str]:
        return [_iso(self.start(position)) for position in range(self.count)]

    def is_complete(self, position: int) -> bool:
        return position < self.complete


def interval_index(t: int, interval: Interval) -> int:
    """Index of the interval holding epoch second ``t``."""
    length, offset = _LENGTH_AND_OFFSET[interval]
    return (t + offset) // length


def interval_grid(interval: str, *, range_start: int, range_end: int, now: int) -> IntervalGrid:
    """The intervals starting in ``[range_start, range_end)``; those ending by ``min(now, range_end)``
    are complete. Raises ValueError for an unknown interval, :class:`RangeTooShort` for a range
    shorter than one interval (which always holds at least one interval start)."""
    check_choice("interval", interval, INTERVALS)
    length, _ = _LENGTH_AND_OFFSET[interval]
    if range_end - range_start < length:
        raise RangeTooShort(f"the time range is shorter than one {interval}: interval={interval} needs a time_range "
                            f"of at least {length // DAY_SECONDS} day(s)")
    first = interval_index(range_start - 1, interval) + 1  # the first interval starting at or after range_start
    count = interval_index(range_end - 1, interval) - first + 1
    complete = min(max(interval_index(min(now, range_end), interval) - first, 0), count)
    return IntervalGrid(interval, first, count, complete, range_end)


def stickiness_last_day(now: int) -> int:
    """Index (days since the epoch) of the last complete UTC day before ``now``."""
    return now // DAY_SECONDS - 1


# --- what the backends compute ----------------------------------------------------------------

@dataclass(frozen=True)
class RetentionQuery:
    """What a retention request asks. An event left out (None, or empty) means any event."""

    mode: Mode = "first_time"
    start_event: str | None = None
    return_event: str | None = None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        object.__setattr__(self, "start_event", self.start_event or None)
        object.__setattr__(self, "return_event", self.return_event or None)


@dataclass(frozen=True)
class RetentionCounts:
    """Retention counts per group, whichever backend computed them.

    ``retained[g, c, k]``: users of group g in the cohort of listed interval c who did the return
    event in interval ``c + k`` (0 where ``c + k`` is past the last interval); ``retained[g, c, 0]``
    is the cohort's size. ``users[g]``: distinct users of group g in at least one cohort. An event
    *seen* is one that occurs before the range's end (always true for "any event").
    """

    retained: np.ndarray
    users: np.ndarray
    start_event_seen: bool
    return_event_seen: bool
    values: tuple[str, ...] = ()  # with a breakdown: the value of each group, in order


@dataclass(frozen=True)
class LifecycleCounts:
    """Lifecycle counts per group and listed interval (arrays shaped ``(groups, intervals)``);
    ``users[g]``: distinct users of group g active in at least one listed interval."""

    new: np.ndarray
    returning: np.ndarray
    resurrecting: np.ndarray
    dormant: np.ndarray
    users: np.ndarray
    values: tuple[str, ...] = ()  # with a breakdown: the value of each group, in order


@dataclass(frozen=True)
class StickinessCounts:
    """Distinct active users per group: ``daily[g, d]`` on each of the 28 days ending with day index
    ``last_day`` (oldest first), ``weekly[g]`` over its last 7 days, ``monthly[g]`` over all 28."""

    last_day: int
    daily: np.ndarray
    weekly: np.ndarray
    monthly: np.ndarray
    values: tuple[str, ...] = ()  # with a breakdown: the value of each group, in order


# --- the reports ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionCohort:
    """One cohort: its size and how many of its users came back in each later interval."""

    cohort_start: str = declare("start of the cohort's interval (UTC)", key=True)
    size: int = declare("users in the cohort", USERS)
    retained: tuple[int, ...] = declare(
        "retained[k]: cohort members who did the return event in interval cohort + k; retained[0] = size", USERS)
    rates: tuple[float | None, ...] = declare("retained[k] / size; null for an empty cohort", FRACTION)
    complete: tuple[bool, ...] = declare("complete[k]: false while interval cohort + k is in progress")


@dataclass(frozen=True)
class RetentionReport:
    """Retention cohorts, oldest first, with size-weighted average rates per period."""

    interval: Literal["day", "week"] = declare("day (UTC) or week (ISO, from Monday 00:00 UTC)")
    mode: Literal["first_time", "recurring"] = declare(
        "first_time: the cohort of the first-ever start event; recurring: of every interval with one")
    start_event: str | None = declare("the event that puts a user in a cohort; null: any event")
    return_event: str | None = declare("the event that counts as coming back; null: any event")
    cohorts: tuple[RetentionCohort, ...] = declare("every interval starting in the range, oldest first")
    average_rates: tuple[float | None, ...] = declare(
        "per period k: retained[k] summed over the cohorts whose cell k is complete / their summed sizes; "
        "null where none has one", FRACTION)
    # declare() makes a dataclasses.Field (no shared default), which ruff's RUF009 cannot tell.
    definitions: dict[str, Any] = declare("how each number is defined")  # noqa: RUF009
    status_codes: tuple[str, ...] = declare("why numbers are null or empty (see definitions.status_codes)")


@dataclass(frozen=True)
class LifecycleInterval:
    """One interval's users by lifecycle status."""

    start: str = declare("start of the interval (UTC)", key=True)
    new: int = declare("users whose first-ever event is in this interval", USERS)
    returning: int = declare("users active in this interval and the one before", USERS)
    resurrecting: int = declare("users active in this interval, not the one before, active earlier", USERS)
    dormant: int = declare("users active in the interval before, not in this one", USERS)
    quick_ratio: float | None = declare("(new + resurrecting) / dormant; null when dormant is 0", RATIO)
    complete: bool = declare("false while the interval is in progress")


@dataclass(frozen=True)
class Stickiness:
    """How often users come back, over the 28 complete days before today."""

    dau: float = declare("average distinct users per day over the 28 days", USERS)
    wau: int = declare("distinct users active in the last 7 of those days", USERS)
    mau: int = declare("distinct users active in the 28 days", USERS)
    dau_mau: float | None = declare("dau / mau; null when mau is 0", FRACTION)
    wau_mau: float | None = declare("wau / mau; null when mau is 0", FRACTION)


@dataclass(frozen=True)
class LifecycleReport:
    """The user lifecycle per interval, oldest first, and stickiness."""

    interval: Literal["day", "week"] = declare("day (UTC) or week (ISO, from Monday 00:00 UTC)")
    intervals: tuple[LifecycleInterval, ...] = declare("every interval starting in the range, oldest first")
    stickiness: Stickiness = declare(  # noqa: RUF009
        "DAU, WAU and MAU over the 28 complete days before today, and their ratios")
    # declare() makes a dataclasses.Field (no shared default), which ruff's RUF009 cannot tell.
    definitions: dict[str, Any] = declare("how each number is defined")  # noqa: RUF009
    status_codes: tuple[str, ...] = declare("why numbers are null or empty (see definitions.status_codes)")


@dataclass(frozen=True)
class RetentionGroup:
    """One value of the breakdown's dimension: the retention of its users."""

    value: str = declare(GROUP_VALUE, key=True)
    users: int = declare("the group's users in at least one cohort", USERS)
    report: RetentionReport = declare("the group's retention", flatten=True)


RetentionBreakdown = breakdown_type(RetentionGroup)


@dataclass(frozen=True)
class RetentionSection(RetentionReport):
    """The retention of the users the filters keep; by group with a breakdown."""

    filters: dict[str, tuple[str, ...]] | None = declare(FILTERS, omit_if_none=True)
    breakdown: RetentionBreakdown | None = declare("retention per value of a dimension", omit_if_none=True)


@dataclass(frozen=True)
class LifecycleGroup:
    """One value of the breakdown's dimension: the lifecycle of its users."""

    value: str = declare(GROUP_VALUE, key=True)
    users: int = declare("the group's users active in at least one listed interval", USERS)
    report: LifecycleReport = declare("the group's lifecycle and stickiness", flatten=True)


LifecycleBreakdown = breakdown_type(LifecycleGroup)


@dataclass(frozen=True)
class LifecycleSection(LifecycleReport):
    """The lifecycle of the users the filters keep; by group with a breakdown."""

    filters: dict[str, tuple[str, ...]] | None = declare(FILTERS, omit_if_none=True)
    breakdown: LifecycleBreakdown | None = declare("the lifecycle per value of a dimension", omit_if_none=True)


RETENTION_STATUS_CODES = {
    "unknown_start_event": "no event of the start event's name occurs before the end of the range",
    "unknown_return_event": "no event of the return event's name occurs before the end of the range",
    "no_users": "every cohort is empty",
    "empty_cohort": "a cohort has no users: its rates are null",
    "incomplete_period": "an average rate is null: no non-empty cohort has completed that period",
}
LIFECYCLE_STATUS_CODES = {
    "no_active_users": "nobody was active in the listed intervals",
    "no_dormant_users": "an interval has no dormant users: its quick_ratio is null",
    "no_active_users_28d": "nobody was active in the 28 days of stickiness: its ratios are null",
}


def retention_report(query: RetentionQuery, grid: IntervalGrid, counts: RetentionCounts, *,
                     group: int = 0) -> RetentionReport:
    """The retention report of group ``group`` of ``counts`` (the only one of a plain query)."""
    retained = counts.retained[group]
    sizes = retained[:, 0]
    cohorts = []
    for c, start in enumerate(grid.starts_iso()):
        row = [int(users) for users in retained[c, :grid.count - c]]
        size = row[0]
        cohorts.append(RetentionCohort(
            cohort_start=start, size=size, retained=tuple(row),
            rates=tuple(users / size if size else None for users in row),
            complete=tuple(grid.is_complete(c + k) for k in range(len(row)))))
    average_rates = []
    for k in range(grid.count):
        # Cohort c's cell k is complete when listed interval c + k is: c < complete - k.
        with_cell = slice(0, max(grid.complete - k, 0))
        weight = int(sizes[with_cell].sum())
        average_rates.append(int(retained[with_cell, k].sum()) / weight if weight else None)

    codes = []
    if not counts.start_event_seen:
        codes.append("unknown_start_event")
    if not counts.return_event_seen:
        codes.append("unknown_return_event")
    if not sizes.any():
        codes.append("no_users")
    if not sizes.all():
        codes.append("empty_cohort")
    if None in average_rates:
        codes.append("incomplete_period")
    return RetentionReport(
        interval=grid.interval, mode=query.mode, start_event=query.start_event, return_event=query.return_event,
        cohorts=tuple(cohorts), average_rates=tuple(average_rates),
        definitions=_retention_definitions(query, grid), status_codes=tuple(codes))


def lifecycle_report(grid: IntervalGrid, counts: LifecycleCounts, stickiness: StickinessCounts, *,
                     group: int = 0) -> LifecycleReport:
    """The lifecycle report of group ``group`` of ``counts`` and ``stickiness``."""
    intervals = []
    for position, start in enumerate(grid.starts_iso()):
        new, returning, resurrecting, dormant = (int(status[group, position]) for status in (
            counts.new, counts.returning, counts.resurrecting, counts.dormant))
        intervals.append(LifecycleInterval(
            start=start, new=new, returning=returning, resurrecting=resurrecting, dormant=dormant,
            quick_ratio=(new + resurrecting) / dormant if dormant else None, complete=grid.is_complete(position)))
    daily = stickiness.daily[group]
    weekly, monthly = int(stickiness.weekly[group]), int(stickiness.monthly[group])
    dau = math.fsum(daily.tolist()) / STICKINESS_DAYS
    sticky = Stickiness(dau=dau, wau=weekly, mau=monthly, dau_mau=dau / monthly if monthly else None,
                        wau_mau=weekly / monthly if monthly else None)

    codes = []
    if not counts.users[group]:
        codes.append("no_active_users")
    if any(item.quick_ratio is None for item in intervals):
        codes.append("no_dormant_users")
    if not monthly:
        codes.append("no_active_users_28d")
    return LifecycleReport(interval=grid.interval, intervals=tuple(intervals), stickiness=sticky,
                           definitions=_lifecycle_definitions(grid, stickiness.last_day), status_codes=tuple(codes))


# --- definitions ------------------------------------------------------------------------------

_INTERVAL_DEFINITIONS = {"day": "UTC calendar day",
                         "week": "ISO week: from Monday 00:00 UTC to the next Monday 00:00 UTC"}


def _retention_definitions(query: RetentionQuery, grid: IntervalGrid) -> dict[str, Any]:
    cohort = {
        "first_time": "the users whose first-ever start event (over the whole history, not only the range) is in "
                      "the interval; a user whose first start event precedes the first listed interval is in none",
        "recurring": "the users who did the start event in the interval; a user joins the cohort of every listed "
                     "interval in which they did it",
    }[query.mode]
    return {
        "interval": _INTERVAL_DEFINITIONS[grid.interval],
        "cohorts": "every interval whose start is inside the range, an empty one with size 0; events from the "
                   "range's end on are not read",
        "cohort": cohort,
        "start_event": query.start_event or "any event",
        "return_event": query.return_event or "any event",
        "retained": "retained[k]: cohort members who did the return event in interval cohort + k exactly, up to the "
                    "current interval; retained[0] is the cohort's size",
        "rates": "retained[k] / size; null for an empty cohort",
        "complete": "complete[k] is false while interval cohort + k is in progress (or cut by the range's end)",
        "average_rates": "one per period of the oldest cohort: sum of retained[k] over the cohorts whose cell k is "
                         "complete / sum of their sizes (size-weighted); null where no non-empty cohort has one",
        "status_codes": RETENTION_STATUS_CODES,
    }


def _lifecycle_definitions(grid: IntervalGrid, last_day: int) -> dict[str, Any]:
    first_day = last_day - STICKINESS_DAYS + 1
    return {
        "interval": _INTERVAL_DEFINITIONS[grid.interval],
        "intervals": "every interval whose start is inside the range; events from the range's end on are not read",
        "activity": "any event",
        "new": "first-ever event (over the whole history) in the interval",
        "returning": "active in the interval and in the one before",
        "resurrecting": "active in the interval, not in the one before, and active at some earlier time",
        "dormant": "active in the interval before, not in this one (a positive count)",
        "quick_ratio": "(new + resurrecting) / dormant; null when dormant is 0",
        "complete": "false while the interval is in progress (or cut by the range's end)",
        "stickiness": {
            "days": {"first": _iso(first_day * DAY_SECONDS), "last": _iso(last_day * DAY_SECONDS)},
            "dau": f"distinct active users per UTC day, averaged over the {STICKINESS_DAYS} complete days before today",
            "wau": f"distinct users active in the last {STICKINESS_WEEK_DAYS} of those days",
            "mau": f"distinct users active in the {STICKINESS_DAYS} days",
            "dau_mau": "dau / mau", "wau_mau": "wau / mau",
        },
        "status_codes": LIFECYCLE_STATUS_CODES,
    }


def _iso(epoch_seconds: int) -> str:
    return iso_z(datetime.fromtimestamp(epoch_seconds, tz=UTC))
