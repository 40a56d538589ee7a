"""Retention and lifecycle kernels at scale against plain per-user references (target: 5 M events/s/core each).

The log: 10 M events of 1 M users over the last 180 days. Each user joins on a random day (one
event), then has about nine more events on random days between joining and today, so most users
of the 90-day range were first seen before it (the case that makes "first-ever" matter) and the
whole history is read.

**Retention**: the default query (week, first_time, any event, 90 days) from the log to the
report: ``retention_counts`` + ``retention_report``. **Lifecycle**: its default (day, 30 days)
with stickiness, as the endpoint computes it: ``lifecycle_counts`` + ``stickiness_counts`` +
``lifecycle_report``. Both are events per second over the whole log.

The baselines are the plain per-user implementations a careful engineer writes first: one pass
over the events filling Python dicts of sets (intervals by integer division), then counting user
by user. They run on the users with the first 10% of codes (about 1 M events), timed per event,
and our counts on that subset are checked equal to theirs.

The kernels are single-threaded numpy, so wall time is time on one core.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from bench import BenchResult, best_time
from bench.kernels import _names, _users_below
from exporter.analysis.retention import (
    STICKINESS_DAYS,
    IntervalGrid,
    RetentionQuery,
    interval_grid,
    lifecycle_report,
    retention_report,
)
from exporter.analysis.segments import DAY_SECONDS
from exporter.events.log import EventLog
from exporter.events.log_retention import lifecycle_counts, retention_counts, stickiness_counts

SEED = 20240611
TODAY = 1_780_000_000 - 1_780_000_000 % DAY_SECONDS  # midnight UTC
NOW = TODAY + 15 * 3_600
REPEATS = 3

EVENTS = 10_000_000
USERS = 1_000_000
HISTORY_DAYS = 180
REFERENCE_SHARE = 10  # the references run on one user in ten
BREAKDOWN_GROUPS = 21  # the default 20 largest groups plus (other)
TARGET_EVENTS_PER_SECOND = 5e6


def run() -> list[BenchResult]:
    log = bench_log()
    subset = _users_below(log, USERS // REFERENCE_SHARE)
    return [_retention_result(log, subset), _lifecycle_result(log, subset)]


def _breakdown() -> np.ndarray:
    """A group per user: one of 21, or -1 (filtered out) for about one user in 22."""
    return np.random.default_rng(SEED).integers(-1, BREAKDOWN_GROUPS, USERS).astype(np.int32)


def bench_log(events: int = EVENTS, users: int = USERS, seed: int = SEED) -> EventLog:
    rng = np.random.default_rng(seed)
    joined = rng.integers(0, HISTORY_DAYS, users)  # days ago
    later_user = rng.integers(0, users, events - users)
    days_ago = (rng.random(len(later_user)) * (joined[later_user] + 1)).astype(np.int64)
    user = np.concatenate((np.arange(users), later_user))
    day = TODAY // DAY_SECONDS - np.concatenate((joined, days_ago))
    seconds = day * DAY_SECONDS + rng.integers(0, DAY_SECONDS, events)
    names = ["app.joined", "app.deploy", "app.view"]
    event = np.concatenate((np.zeros(users, dtype=np.int64), rng.integers(1, len(names), len(later_user))))
    return EventLog.build(user.astype(np.int32), event.astype(np.int32), seconds, _names("u", users), names)


def _grid(interval: str, days: int) -> IntervalGrid:
    return interval_grid(interval, range_start=TODAY - (days - 1) * DAY_SECONDS, range_end=TODAY + DAY_SECONDS,
                         now=NOW)


def _interval_of(second: int, interval: str) -> int:
    """Days since the epoch, or ISO weeks (the epoch was a Thursday: Monday-based weeks start 3 days later)."""
    day = second // DAY_SECONDS
    return day if interval == "day" else (day + 3) // 7


def _listed(grid: IntervalGrid) -> dict[int, int]:
    """Position of each listed interval, by its interval number."""
    return {_interval_of(grid.start(p), grid.interval): p for p in range(grid.count)}


# --------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------

def reference_retention(log: EventLog, grid: IntervalGrid) -> tuple[list[list[int]], int]:
    """First-time cohorts of any event: ``retained[c][k]`` and the users in a cohort, user by user."""
    listed = _listed(grid)
    first: dict[int, int] = {}
    active: dict[int, set[int]] = defaultdict(set)
    for user, second in zip(log.user_ids.tolist(), log.timestamps.tolist()):
        if second >= grid.end:
            continue
        first.setdefault(user, second)  # the log is in time order
        position = listed.get(_interval_of(second, grid.interval))
        if position is not None:
            active[user].add(position)
    retained = [[0] * (grid.count - c) for c in range(grid.count)]
    members = 0
    for user, second in first.items():
        cohort = listed.get(_interval_of(second, grid.interval))
        if cohort is None:
            continue
        members += 1
        retained[cohort][0] += 1
        for k in range(1, grid.count - cohort):
            retained[cohort][k] += (cohort + k) in active[user]
    return retained, members


def _retention_result(log: EventLog, subset: EventLog) -> BenchResult:
    query, grid = RetentionQuery(), _grid("week", 90)
    ours_s = best_time(lambda: retention_report(query, grid, retention_counts(log, query, grid)), REPEATS)
    worst = RetentionQuery("recurring")
    worst_grid = _grid("day", 90)
    worst_s = best_time(lambda: retention_report(worst, worst_grid, retention_counts(log, worst, worst_grid)), 1)
    groups = _breakdown()
    breakdown_s = best_time(lambda: retention_counts(log, query, grid, group_of_user=groups,
                                                     n_groups=BREAKDOWN_GROUPS), REPEATS)
    started = time.perf_counter()
    retained, members = reference_retention(subset, grid)
    reference_s = time.perf_counter() - started
    ours = retention_counts(subset, query, grid)
    if [row[:grid.count - c] for c, row in enumerate(ours.retained[0].tolist())] != retained \
            or int(ours.users[0]) != members:
        raise AssertionError("retention: the per-user reference and retention_counts disagree")
    return BenchResult(
        name=f"retention: {len(log) / 1e6:g} M events, end to end", ours=len(log) / ours_s / 1e6,
        baseline=len(subset) / reference_s / 1e6, unit="M events/s", better="higher",
        target=TARGET_EVENTS_PER_SECOND / 1e6,
        notes=((f"ours: retention_counts + retention_report (week, first_time, any event, 90 days: {grid.count} "
                f"cohorts) on {len(log):,} events of {USERS:,} users over {HISTORY_DAYS} days; best of {REPEATS}: "
                f"{ours_s:.2f} s; the heaviest query (day, recurring, 90 days: {worst_grid.count} cohorts) "
                f"{worst_s:.2f} s; the default query broken down into {BREAKDOWN_GROUPS} groups {breakdown_s:.2f} s"),
               (f"baseline: plain per-user Python (dicts of sets, integer intervals) on the first "
                f"{len(subset.user_names):,} users' {len(subset):,} events: {reference_s:.2f} s; same cohort sizes "
                "and retained counts")))


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------

def reference_lifecycle(log: EventLog, grid: IntervalGrid, now: int) -> tuple[list[list[int]], list[int]]:
    """Per listed day, new/returning/resurrecting/dormant; and DAU per stickiness day, WAU, MAU."""
    listed = _listed(grid)  # listed positions 0..n-1; the day before the first is -1
    before = min(listed) - 1
    today = now // DAY_SECONDS
    sticky_days = [today - back for back in range(STICKINESS_DAYS, 0, -1)]
    first: dict[int, int] = {}
    active: dict[int, set[int]] = defaultdict(set)
    per_day: dict[int, set[int]] = {day: set() for day in sticky_days}
    for user, second in zip(log.user_ids.tolist(), log.timestamps.tolist()):
        day = second // DAY_SECONDS
        if day in per_day:
            per_day[day].add(user)
        if second >= grid.end:
            continue
        first.setdefault(user, day)
        position = -1 if day == before else listed.get(day)
        if position is not None:
            active[user].add(position)
    statuses = [[0, 0, 0, 0] for _ in range(grid.count)]
    for user, days in active.items():
        first_position = listed.get(first[user], -2)  # -2: before the listed days and the one before
        for position in range(grid.count):
            now_active, was_active = position in days, position - 1 in days
            if now_active and first_position == position:
                statuses[position][0] += 1
            elif now_active and was_active:
                statuses[position][1] += 1
            elif now_active:
                statuses[position][2] += 1
            if was_active and not now_active:
                statuses[position][3] += 1
    week = set().union(*(per_day[day] for day in sticky_days[-7:]))
    month = set().union(*per_day.values())
    return statuses, [*(len(per_day[day]) for day in sticky_days), len(week), len(month)]


def _lifecycle(log: EventLog, grid: IntervalGrid):
    return lifecycle_report(grid, lifecycle_counts(log, grid), stickiness_counts(log, now=NOW))


def _lifecycle_result(log: EventLog, subset: EventLog) -> BenchResult:
    grid = _grid("day", 30)
    ours_s = best_time(lambda: _lifecycle(log, grid), REPEATS)
    groups = _breakdown()
    breakdown_s = best_time(lambda: (lifecycle_counts(log, grid, group_of_user=groups, n_groups=BREAKDOWN_GROUPS),
                                     stickiness_counts(log, now=NOW, group_of_user=groups,
                                                       n_groups=BREAKDOWN_GROUPS)), REPEATS)
    started = time.perf_counter()
    statuses, sticky = reference_lifecycle(subset, grid, NOW)
    reference_s = time.perf_counter() - started
    counts, stickiness = lifecycle_counts(subset, grid), stickiness_counts(subset, now=NOW)
    ours_statuses = np.stack((counts.new[0], counts.returning[0], counts.resurrecting[0], counts.dormant[0]),
                             axis=1)
    ours_sticky = [*stickiness.daily[0].tolist(), int(stickiness.weekly[0]), int(stickiness.monthly[0])]
    if ours_statuses.tolist() != statuses or ours_sticky != sticky:
        raise AssertionError("lifecycle: the per-user reference and lifecycle_counts disagree")
    return BenchResult(
        name=f"lifecycle: {len(log) / 1e6:g} M events, end to end", ours=len(log) / ours_s / 1e6,
        baseline=len(subset) / reference_s / 1e6, unit="M events/s", better="higher",
        target=TARGET_EVENTS_PER_SECOND / 1e6,
        notes=((f"ours: lifecycle_counts + stickiness_counts + lifecycle_report (day, 30 days) on {len(log):,} "
                f"events of {USERS:,} users; best of {REPEATS}: {ours_s:.2f} s; broken down into {BREAKDOWN_GROUPS} "
                f"groups {breakdown_s:.2f} s"),
               (f"baseline: plain per-user Python (dicts of sets, integer days) on the first "
                f"{len(subset.user_names):,} users' {len(subset):,} events: {reference_s:.2f} s; same statuses per "
                "day, DAU per day, WAU and MAU")))
