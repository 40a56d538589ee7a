"""Retention, lifecycle and stickiness counted from the in-memory event log: the file backend's kernels.

The semantics are those of :mod:`exporter.analysis.retention` (which also makes the reports); the
ClickHouse backend counts the same in SQL (:mod:`exporter.events.clickhouse_retention`).

Every number here is a count of distinct users with some combination of "did an event in
interval i" facts. So each interval becomes one **bitset over the users** (64 users per uint64
word), built by one scatter of the user codes of its events: the log is in time order, so an
interval's events are one slice found with ``searchsorted`` -- no per-event arithmetic, no sort, no
``np.unique``. The counts are then popcounts of bitwise combinations of those sets, e.g.
``retained[c, k] = |cohort_c AND returned_(c+k)|`` or ``dormant_i = |active_(i-1) AND NOT active_i|``,
whose cost depends on the numbers of users and intervals, not of events. On 1 M users a set is
125 kB; 90 days of them take 11 MB.

Breakdowns and filters: ``group_of_user`` gives each user code a group (-1: filtered out). The
users are then laid out group after group, each group padded to whole words, so one popcount
per word and one ``np.add.reduceat`` over the groups' word ranges count every group in the same
pass; a breakdown costs about what a plain query does.
"""

from __future__ import annotations

import numpy as np

from exporter.analysis.retention import (
    STICKINESS_DAYS,
    STICKINESS_WEEK_DAYS,
    IntervalGrid,
    LifecycleCounts,
    RetentionCounts,
    RetentionQuery,
    StickinessCounts,
    stickiness_last_day,
)
from exporter.analysis.segments import DAY_SECONDS
from exporter.events.log import EventLog

_WORD_BITS = 64
_UNKNOWN_EVENT = -1  # the code of an event name absent from the log: no event has it


def retention_counts(log: EventLog, query: RetentionQuery, grid: IntervalGrid, *,
                     group_of_user: np.ndarray | None = None, n_groups: int = 1) -> RetentionCounts:
    """Cohort sizes and retained users per (group, cohort, period) for ``query`` over ``grid``."""
    users = _UserBits(len(log.user_names), group_of_user, n_groups)
    bounds = _bounds(log, [grid.start(position) for position in range(grid.count)], grid.end)
    start_code, return_code = _code(log, query.start_event), _code(log, query.return_event)
    started = users.sets(log, bounds, start_code)
    returned = started if return_code == start_code else users.sets(log, bounds, return_code)
    if query.mode == "first_time":
        # A cohort keeps the users whose first start event is in its interval: not seen before it,
        # counting every start event before the first listed interval (the whole history).
        earlier = users.set_of(log, 0, bounds[0], start_code)
        seen_before = np.vstack((earlier, earlier | np.bitwise_or.accumulate(started, axis=0)[:-1]))
        cohorts = started & ~seen_before
    else:
        cohorts = started

    n = grid.count
    retained = np.zeros((n_groups, n, n), dtype=np.int64)
    for c in range(n):
        retained[:, c, 0] = users.count(cohorts[c])
        retained[:, c, 1:n - c] = users.count(returned[c + 1:] & cohorts[c]).T
    end = int(bounds[-1])
    return RetentionCounts(retained=retained, users=users.count(np.bitwise_or.reduce(cohorts, axis=0)),
                           start_event_seen=_seen(log, start_code, end), return_event_seen=_seen(log, return_code, end))


def lifecycle_counts(log: EventLog, grid: IntervalGrid, *, group_of_user: np.ndarray | None = None,
                     n_groups: int = 1) -> LifecycleCounts:
    """New, returning, resurrecting and dormant users per (group, listed interval); activity = any event."""
    users = _UserBits(len(log.user_names), group_of_user, n_groups)
    # Sets for the interval before the first listed one too: the first's "previous interval".
    bounds = _bounds(log, [grid.start(position) for position in range(-1, grid.count)], grid.end)
    active = users.sets(log, bounds, None)
    earlier = users.set_of(log, 0, bounds[0], None)
    seen = earlier | np.bitwise_or.accumulate(active, axis=0)[:-1]  # seen[i]: active before listed interval i
    current, previous = active[1:], active[:-1]
    return LifecycleCounts(
        new=users.count(current & ~seen).T,
        returning=users.count(current & previous).T,
        resurrecting=users.count(current & ~previous & seen).T,
        dormant=users.count(previous & ~current).T,
        users=users.count(np.bitwise_or.reduce(current, axis=0)))


def stickiness_counts(log: EventLog, *, now: int, group_of_user: np.ndarray | None = None,
                      n_groups: int = 1) -> StickinessCounts:
    """Distinct active users on each of the 28 complete days before ``now``'s day, in its last 7, in all 28."""
    users = _UserBits(len(log.user_names), group_of_user, n_groups)
    last_day = stickiness_last_day(now)
    days = [day * DAY_SECONDS for day in range(last_day - STICKINESS_DAYS + 1, last_day + 1)]
    daily = users.sets(log, _bounds(log, days, (last_day + 1) * DAY_SECONDS), None)
    return StickinessCounts(
        last_day=last_day, daily=users.count(daily).T,
        weekly=users.count(np.bitwise_or.reduce(daily[-STICKINESS_WEEK_DAYS:], axis=0)),
        monthly=users.count(np.bitwise_or.reduce(daily, axis=0)))


# --- helpers --------------------------------------------------------------------------------

class _UserBits:
    """Bitsets over the users of a log, laid out group after group (each group padded to whole
    words, at least one so that every group's word range is non-empty for ``reduceat``)."""

    def __init__(self, n_users: int, group_of_user: np.ndarray | None, n_groups: int) -> None:
        if n_groups < 1:
            raise ValueError("n_groups must be at least 1")
        if group_of_user is None:
            if n_groups != 1:
                raise ValueError("n_groups needs group_of_user")
            words = np.array([_words(n_users)])
        else:
            group = np.asarray(group_of_user, dtype=np.int64)
            if group.shape != (n_users,):
                raise ValueError(f"group_of_user needs one group per user code ({n_users})")
            if n_users and (int(group.min()) < -1 or int(group.max()) >= n_groups):
                raise ValueError(f"group_of_user holds groups outside -1..{n_groups - 1}")
            users_per_group = np.bincount(group + 1, minlength=n_groups + 1)  # [0]: filtered out
            words = np.maximum(1, -(-users_per_group[1:] // _WORD_BITS))
        self._first_word = np.concatenate(([0], np.cumsum(words)[:-1]))
        self.n_words = int(words.sum())
        self._n_bits = self.n_words * _WORD_BITS
        # Without groups a user code is its bit position; the slot after the last bit takes the
        # filtered-out users and is never read.
        self._position = None if group_of_user is None else self._positions(group, users_per_group)
        self._buffer = np.zeros(self._n_bits + 1, dtype=bool)

    def _positions(self, group: np.ndarray, users_per_group: np.ndarray) -> np.ndarray:
        """Bit position of every user code: its group's first bit plus its rank in the group."""
        # numpy's stable sort is a radix sort on 16-bit integers: about 8x faster than on int64.
        order = np.argsort(group.astype(np.int16) if len(users_per_group) <= 1 << 15 else group, kind="stable")
        ordered = group[order]
        first_in_order = np.concatenate(([0], np.cumsum(users_per_group)[:-1]))
        rank = np.arange(len(group)) - first_in_order[ordered + 1]
        first_bit = self._first_word[np.maximum(ordered, 0)] * _WORD_BITS
        # int32 positions where they fit: the gather per event reads half the memory.
        position = np.empty(len(group), dtype=np.int32 if self._n_bits < 1 << 31 else np.int64)
        position[order] = np.where(ordered >= 0, first_bit + rank, self._n_bits)
        return position

    def set_of(self, log: EventLog, first: int, stop: int, code: int | None) -> np.ndarray:
        """The users with a selected event among events ``first:stop`` of the log, as words."""
        users = log.user_ids[first:stop]
        if code is not None:
            users = users[log.event_ids[first:stop] == code]
        self._buffer[:] = False
        self._buffer[users if self._position is None else self._position[users]] = True
        return np.packbits(self._buffer[:self._n_bits], bitorder="little").view(np.uint64)

    def sets(self, log: EventLog, bounds: np.ndarray, code: int | None) -> np.ndarray:
        """One set per slice ``bounds[i]:bounds[i + 1]`` of the log, shaped ``(slices, words)``."""
        sets = np.empty((len(bounds) - 1, self.n_words), dtype=np.uint64)
        for index in range(len(bounds) - 1):
            sets[index] = self.set_of(log, int(bounds[index]), int(bounds[index + 1]), code)
        return sets

    def count(self, sets: np.ndarray) -> np.ndarray:
        """Users per group in each set: shape ``(..., groups)``."""
        return np.add.reduceat(np.bitwise_count(sets), self._first_word, axis=-1, dtype=np.int64)


def _words(n_bits: int) -> int:
    return max(1, -(-n_bits // _WORD_BITS))


def _bounds(log: EventLog, starts: list[int], end: int) -> np.ndarray:
    """Log positions of the time slices ``[starts[i], starts[i + 1])``, the last up to ``end``."""
    return np.searchsorted(log.timestamps, [*starts, end], side="left")


def _code(log: EventLog, name: str | None) -> int | None:
    """The event code to select (None: any event)."""
    if name is None:
        return None
    code = log.event_code(name)
    return _UNKNOWN_EVENT if code is None else code


def _seen(log: EventLog, code: int | None, end: int) -> bool:
    """Whether a selected event occurs among the first ``end`` events (any event counts as seen)."""
    return code is None or (code != _UNKNOWN_EVENT and bool(np.any(log.event_ids[:end] == code)))
