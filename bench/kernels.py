"""Analysis kernels at scale against plain per-user references: funnels and segments.

**Funnels** (target: at least 5 M events/s on one core, end to end): ``analyse_funnel`` -- step
keys, the vectorised walk, the per-user reduction and the funnel report -- over a 10 M-event
log in which every event is a step of the funnel (the worst case: every event is keyed, sorted
and searched). The baseline is the plain per-user implementation a careful engineer writes
first: group each user's step times in Python lists, then walk every attempt with ``bisect``.
It runs on the first 10% of the users (about 1 M events); both throughputs are events per
second, and the two are checked to find the same furthest step and step times for every user.

**Segments** (target: under 2 s): ``analyse_segments`` over 1 M users with up to 180 days of
history, active on days across the 90-day lookback. The baseline walks each user's events with
Python sets and ``statistics.median``, applies the rules literally and aggregates the report's
counts. It is timed on two subsets of the users (the first 10,000 and 30,000) and scaled to 1 M
users from the larger, per user; the per-user cost at the two sizes shows how linear that
scaling is. Segment sizes are checked equal on the larger subset.

Both kernels are single-threaded numpy (no BLAS), so wall time is time on one core.
"""

from __future__ import annotations

import statistics
import time
from bisect import bisect_right
from collections import defaultdict

import numpy as np

from bench import BenchResult, best_time
from exporter.analysis.funnels import FunnelDefinition, FunnelStep
from exporter.analysis.segments import (
    DAY_SECONDS,
    LOOKBACK_DAYS,
    SEGMENT_NAMES,
    WINDOW_DAYS,
    SegmentThresholds,
)
from exporter.events.log import EventLog
from exporter.events.log_activity import analyse_segments
from exporter.events.log_funnels import analyse_funnel, funnel_reach

SEED = 20240607
NOW = 1_780_000_000 - 1_780_000_000 % DAY_SECONDS + DAY_SECONDS - 1  # the last second of a UTC day
REPEATS = 3

FUNNEL_EVENTS = 10_000_000
FUNNEL_USERS = 1_000_000
FUNNEL_REFERENCE_SHARE = 10  # the reference runs on one user in ten
FUNNEL_RANGE_DAYS = 30
FUNNEL = FunnelDefinition(
    "bench", "four steps, every event a step",
    tuple(FunnelStep(f"step {k + 1}", f"app.step_{k + 1}") for k in range(4)), window_seconds=7 * DAY_SECONDS)
FUNNEL_TARGET_EVENTS_PER_SECOND = 5e6

SEGMENT_USERS = 1_000_000
SEGMENT_REFERENCE_USERS = (10_000, 30_000)
SEGMENT_FEATURES = 12
SEGMENT_TARGET_SECONDS = 2.0


def run() -> list[BenchResult]:
    return [_funnel_result(), _segments_result()]


# --------------------------------------------------------------------------------------------
# Funnels
# --------------------------------------------------------------------------------------------

def funnel_log(events: int = FUNNEL_EVENTS, users: int = FUNNEL_USERS, seed: int = SEED, *,
               teams: int = 0) -> EventLog:
    """``events`` step events of ``users`` users, uniform over the funnel's range and window.

    With ``teams``, every user is in one of that many teams of very different sizes (Zipf-like)
    and a third of the events carry the user's team as the property ``team``."""
    rng = np.random.default_rng(seed)
    span = FUNNEL_RANGE_DAYS * DAY_SECONDS + FUNNEL.window_seconds
    user_ids = rng.integers(0, users, events, dtype=np.int32)
    properties = None
    if teams:
        sizes = 1.0 / np.arange(1, teams + 1)
        team_of_user = rng.choice(teams, users, p=sizes / sizes.sum())
        carried = np.where(rng.random(events) < 1 / 3, team_of_user[user_ids], -1)
        properties = {"team": (carried, [f"team-{k:03d}" for k in range(teams)])}
    return EventLog.build(user_ids, rng.integers(0, len(FUNNEL.steps), events, dtype=np.int32),
                          _funnel_start() + rng.integers(0, span, events), _names("u", users),
                          [step.event for step in FUNNEL.steps], properties)


def _funnel_start() -> int:
    return NOW - FUNNEL_RANGE_DAYS * DAY_SECONDS - FUNNEL.window_seconds


def funnel_range() -> tuple[int, int]:
    start = _funnel_start()
    return start, start + FUNNEL_RANGE_DAYS * DAY_SECONDS


def reference_funnel_reach(log: EventLog, funnel: FunnelDefinition, range_start: int,
                           range_end: int) -> dict[int, list[int]]:
    """{user: step times of the user's furthest attempt (the earliest among equals)}, per user in Python."""
    step_of_event = {log.event_code(step.event): k for k, step in enumerate(funnel.steps)}
    times_by_user: dict[int, list[list[int]]] = defaultdict(lambda: [[] for _ in funnel.steps])
    for user, event, second in zip(log.user_ids.tolist(), log.event_ids.tolist(), log.timestamps.tolist()):
        step = step_of_event.get(event)
        if step is not None:
            times_by_user[user][step].append(second)  # ascending: the log is in time order
    reach = {}
    for user, times in times_by_user.items():
        best: list[int] = []
        for start in times[0]:
            if not range_start <= start < range_end:
                continue
            chain = [start]
            for later in times[1:]:
                index = bisect_right(later, chain[-1])  # strictly after the previous step
                if index == len(later) or later[index] > start + funnel.window_seconds:
                    break
                chain.append(later[index])
            if len(chain) > len(best):
                best = chain
        if best:
            reach[user] = best
    return reach


def _reach_by_user(log: EventLog, range_start: int, range_end: int) -> dict[int, list[int]]:
    """Our ``funnel_reach`` in the reference's shape."""
    reach = funnel_reach(log, FUNNEL, range_start=range_start, range_end=range_end)
    found: dict[int, list[int]] = {int(user): [] for user in reach.users}
    for step, times in enumerate(reach.step_times):  # times of the users with levels > step, in user order
        for user, second in zip(reach.users[reach.levels > step].tolist(), times.tolist()):
            found[user].append(second)
    return found


def _funnel_result() -> BenchResult:
    log = funnel_log()
    range_start, range_end = funnel_range()
    ours_s = best_time(lambda: analyse_funnel(log, FUNNEL, range_start=range_start, range_end=range_end, now=NOW),
                       REPEATS)
    subset = _users_below(log, FUNNEL_USERS // FUNNEL_REFERENCE_SHARE)
    ours_reach = _reach_by_user(subset, range_start, range_end)
    started = time.perf_counter()
    reference = reference_funnel_reach(subset, FUNNEL, range_start, range_end)
    reference_s = time.perf_counter() - started
    if reference != ours_reach:
        raise AssertionError("funnel: the per-user reference and analyse_funnel disagree")
    ours_rate, reference_rate = len(log) / ours_s, len(subset) / reference_s
    return BenchResult(
        name=f"funnel: {len(log) / 1e6:g} M events, end to end", ours=ours_rate / 1e6, baseline=reference_rate / 1e6,
        unit="M events/s", better="higher", target=FUNNEL_TARGET_EVENTS_PER_SECOND / 1e6,
        notes=(f"ours: analyse_funnel (keys, walk, per-user reduction, report) on {len(log):,} events of "
               f"{FUNNEL_USERS:,} users, {len(FUNNEL.steps)} steps, every event a step; best of {REPEATS}: "
               f"{ours_s:.2f} s",
               f"baseline: plain per-user Python (lists + bisect) on the first {len(ours_reach):,} entering users' "
               f"{len(subset):,} events: {reference_s:.2f} s; same furthest step and step times for every user"))


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------

def segments_log(users: int = SEGMENT_USERS, seed: int = SEED) -> EventLog:
    """``users`` users seen first up to 180 days ago, each active on a few to most days since
    (a heavy-tailed mix), one to three feature events per active day."""
    rng = np.random.default_rng(seed)
    today = NOW // DAY_SECONDS
    age = rng.integers(0, 180, users)
    activity = rng.choice([0.02, 0.08, 0.25, 0.6], users, p=[0.45, 0.3, 0.18, 0.07])  # share of days active
    days = np.maximum(1, rng.binomial(np.minimum(age, LOOKBACK_DAYS + WINDOW_DAYS) + 1, activity))
    day_user = np.repeat(np.arange(users), days)
    span = np.minimum(age, LOOKBACK_DAYS + WINDOW_DAYS) + 1
    day_ago = (rng.random(len(day_user)) * span[day_user]).astype(np.int64)
    per_day = rng.integers(1, 4, len(day_user))
    event_user = np.concatenate((np.arange(users), np.repeat(day_user, per_day)))  # first, a "joined" event
    event_day = np.concatenate((age, np.repeat(day_ago, per_day)))
    event_name = np.concatenate((np.zeros(users, dtype=np.int64),
                                 rng.integers(1, SEGMENT_FEATURES + 1, len(event_user) - users)))
    seconds = (today - event_day) * DAY_SECONDS + rng.integers(0, DAY_SECONDS, len(event_user))
    return EventLog.build(event_user.astype(np.int32), event_name.astype(np.int32), seconds, _names("u", users),
                          ["app.joined", *(f"app.feature_{k}" for k in range(1, SEGMENT_FEATURES + 1))])


def reference_segment_sizes(log: EventLog, now: int, thresholds: SegmentThresholds = SegmentThresholds()
                            ) -> dict[str, int]:
    """Users per segment, one user at a time with sets and statistics.median (every event meaningful,
    every event name its own feature)."""
    today = now // DAY_SECONDS
    days: dict[int, set[int]] = defaultdict(set)
    features: dict[int, set[int]] = defaultdict(set)
    first_seen: dict[int, int] = {}
    for user, event, second in zip(log.user_ids.tolist(), log.event_ids.tolist(), log.timestamps.tolist()):
        if second > now:
            continue
        ago = today - second // DAY_SECONDS
        days[user].add(ago)
        if ago < WINDOW_DAYS:
            features[user].add(event)
        first_seen[user] = max(first_seen.get(user, ago), ago)
    t = thresholds
    sizes = dict.fromkeys(SEGMENT_NAMES, 0)
    for user, active in days.items():
        l28 = sum(1 for d in active if d < WINDOW_DAYS)
        l28_prev = sum(1 for d in active if WINDOW_DAYS <= d < 2 * WINDOW_DAYS)
        recency, breadth, age = min(active), len(features[user]), first_seen[user]
        recent = sorted(d for d in active if d < LOOKBACK_DAYS)
        gap = statistics.median(b - a for a, b in zip(recent, recent[1:])) if len(recent) > 1 else None
        if age <= t.new_max_age_days:
            segment = "new"
        elif recency >= t.churned_min_recency_days:
            segment = "churned"
        elif recency >= t.dormant_min_recency_days:
            segment = "dormant"
        elif l28_prev >= t.at_risk_min_previous_active_days and (
                recency >= max(t.at_risk_min_recency_days, t.at_risk_gap_multiplier * gap)
                or l28 <= t.at_risk_max_activity_ratio * l28_prev):
            segment = "at_risk"
        elif l28 >= t.power_min_active_days and breadth >= t.power_min_features:
            segment = "power"
        elif l28 >= t.core_min_active_days:
            segment = "core"
        else:
            segment = "casual"
        sizes[segment] += 1
    return sizes


def _segments_result() -> BenchResult:
    log = segments_log()
    ours_s = best_time(lambda: analyse_segments(log, now=NOW), REPEATS)
    per_user = {}
    for users in SEGMENT_REFERENCE_USERS:
        subset = _users_below(log, users)
        started = time.perf_counter()
        sizes = reference_segment_sizes(subset, NOW)
        per_user[users] = (time.perf_counter() - started) / users
    ours_sizes = {s["segment_name"]: s["user_count"] for s in analyse_segments(subset, now=NOW)["segments"]}
    if sizes != ours_sizes:
        raise AssertionError(f"segments: the per-user reference and analyse_segments disagree: {sizes} != {ours_sizes}")
    largest = max(SEGMENT_REFERENCE_USERS)
    reference_s = per_user[largest] * SEGMENT_USERS
    linearity = ", ".join(f"{users:,} users {seconds * 1e6:.1f} us" for users, seconds in per_user.items())
    return BenchResult(
        name=f"segments: {SEGMENT_USERS / 1e6:g} M users x 90 days", ours=ours_s, baseline=reference_s, unit="s",
        target=SEGMENT_TARGET_SECONDS,
        notes=(f"ours: analyse_segments (measures, rules, engagement, report) on {len(log):,} events of "
               f"{SEGMENT_USERS:,} users; best of {REPEATS}",
               f"baseline: plain per-user Python timed on subsets and scaled from the {largest:,}-user one "
               f"(x {SEGMENT_USERS // largest}); per user: {linearity}; segment sizes equal on that subset"))


# --------------------------------------------------------------------------------------------

def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{number:07d}" for number in range(count)]


def _users_below(log: EventLog, users: int) -> EventLog:
    """The events of users with codes below ``users`` (still in time order)."""
    keep = log.user_ids < users
    return EventLog(log.user_ids[keep], log.event_ids[keep], log.timestamps[keep], log.user_names[:users],
                    log.event_names)
