"""Ordered funnels answered from the in-memory event log: the file backend's funnel kernel.

The semantics are those of :mod:`exporter.analysis.funnels` (which also makes the report); this
module works out, with numpy, how far each user got. Only the events of the funnel's steps are
kept; each step's events become one sorted int64 key ``user << 32 | seconds since range_start``.
All attempts advance together, one ``searchsorted`` per step, and results are reduced per user
with ``np.maximum.reduceat``. The ClickHouse backend answers the same question in SQL
(:mod:`exporter.events.clickhouse_queries`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from exporter.analysis.breakdowns import EVERYONE, Selection
from exporter.analysis.funnels import FunnelDefinition, progress_report
from exporter.events.log import EventLog
from exporter.events.log_dimensions import select_users

_TIME_BITS = 32
_TIME_MASK = (1 << _TIME_BITS) - 1


@dataclass(frozen=True)
class FunnelReach:
    """Per user who entered the funnel: the furthest step and that attempt's step timestamps.

    ``users`` are the codes (ascending) of the users who entered; ``levels[i]`` is the number of
    steps ``users[i]`` reached (1..n). ``step_times[k]`` holds the epoch seconds of step k
    (0-based) for the users with ``levels > k``, in the same order.
    """

    users: np.ndarray
    levels: np.ndarray
    step_times: tuple[np.ndarray, ...]
    groups: np.ndarray | None = None  # with a breakdown: each entrant's value code (``values[code]``)
    values: tuple[str, ...] = ()

    def restricted(self, kept: np.ndarray) -> FunnelReach:
        """The outcome of the entrants ``kept`` (a boolean per entrant) only."""
        times = tuple(times[kept[self.levels > step]] for step, times in enumerate(self.step_times))
        return FunnelReach(self.users[kept], self.levels[kept], times,
                           None if self.groups is None else self.groups[kept], self.values)

    def transition_seconds(self, step: int) -> np.ndarray:
        """Seconds from step ``step`` to ``step + 1`` for the users who made that transition."""
        reached_step = self.levels[self.levels > step]
        went_on = reached_step > step + 1
        return self.step_times[step + 1] - self.step_times[step][went_on]

    def completion_seconds(self) -> np.ndarray:
        """Seconds from step 1 to the last step for the users who completed the funnel."""
        completed = self.levels == len(self.step_times)
        return self.step_times[-1] - self.step_times[0][completed]


def funnel_reach(log: EventLog, funnel: FunnelDefinition, *, range_start: int, range_end: int,
                 selection: Selection = EVERYONE) -> FunnelReach:
    """How far each user who entered in ``[range_start, range_end)`` and whom ``selection`` keeps
    (values as of ``range_end``) got, and when; with a breakdown, each entrant's value."""
    reach = _reach(log, funnel, range_start=range_start, range_end=range_end)
    chosen = select_users(log, selection, range_end)
    if chosen.selected is not None:
        reach = reach.restricted(chosen.selected[reach.users])
    if chosen.value_codes is not None:
        reach = dataclasses.replace(reach, groups=chosen.value_codes[reach.users], values=chosen.values)
    return reach


def _reach(log: EventLog, funnel: FunnelDefinition, *, range_start: int, range_end: int) -> FunnelReach:
    """How far each user who entered in ``[range_start, range_end)`` got, and when."""
    if range_end < range_start:
        raise ValueError("range_end must not be before range_start")
    window = funnel.window_seconds
    step_windows = funnel.step_windows or (None,) * (len(funnel.steps) - 1)
    # Keys hold seconds since range_start in 32 bits; the largest value formed is the latest
    # start plus W plus a step window capped at W.
    if (range_end - range_start) + 2 * window >= 1 << _TIME_BITS:
        raise ValueError("funnel range plus twice the window must be under 2**32 seconds")

    events = _StepEvents(log, range_start, range_end - 1 + window)
    starts = events.keys(funnel.steps[0].event)
    starts = starts[(starts & _TIME_MASK) < range_end - range_start]
    if not len(starts):
        nothing = np.empty(0, dtype=np.int64)
        return FunnelReach(nothing, nothing, tuple(nothing for _ in funnel.steps))
    # Equal (user, second) starts have equal outcomes; keep one so each is advanced once.
    starts = starts[np.concatenate(([True], starts[1:] != starts[:-1]))]

    level = np.ones(len(starts), dtype=np.int64)
    alive = np.arange(len(starts))  # attempts still advancing, ascending
    current, deadline = starts, starts + window
    alive_at_step, times_at_step = [alive], [starts & _TIME_MASK]
    for step, step_window in enumerate(step_windows, start=1):
        candidates = events.keys(funnel.steps[step].event)
        if not len(candidates) or not len(alive):
            break
        # The first event of this step after the current one, for every attempt at once. Keys
        # order by user, then time, so "key > current" means same user and later, or a later
        # user; "key <= limit" (limit carries the user bits) keeps only the same user in time.
        found = np.searchsorted(candidates, current, side="right")
        following = candidates[np.minimum(found, len(candidates) - 1)]
        limit = deadline
        if step_window is not None:
            limit = np.minimum(deadline, current + min(step_window, window))
        advanced = (following > current) & (following <= limit)
        alive, current, deadline = alive[advanced], following[advanced], deadline[advanced]
        level[alive] = step + 1
        alive_at_step.append(alive)
        times_at_step.append(current & _TIME_MASK)

    return _reduce_per_user(
        starts >> _TIME_BITS, level, alive_at_step, times_at_step, range_start, len(funnel.steps)
    )


class _StepEvents:
    """Sorted ``user << 32 | seconds`` keys per event name, within the funnel's time span."""

    def __init__(self, log: EventLog, range_start: int, last_second: int) -> None:
        first = np.searchsorted(log.timestamps, range_start, side="left")
        end = np.searchsorted(log.timestamps, last_second, side="right")
        self._log = log
        self._users = log.user_ids[first:end]
        self._events = log.event_ids[first:end]
        self._timestamps = log.timestamps[first:end]  # views: no copy of the span
        self._range_start = range_start
        self._keys: dict[int, np.ndarray] = {}

    def keys(self, event: str) -> np.ndarray:
        code = self._log.event_code(event)
        if code is None:
            return np.empty(0, dtype=np.int64)
        if code not in self._keys:
            selected = self._events == code
            seconds = self._timestamps[selected] - self._range_start
            keys = (self._users[selected].astype(np.int64) << _TIME_BITS) | seconds
            keys.sort()
            self._keys[code] = keys
        return self._keys[code]


def _reduce_per_user(
    attempt_users: np.ndarray,
    level: np.ndarray,
    alive_at_step: list[np.ndarray],
    times_at_step: list[np.ndarray],
    range_start: int,
    n_steps: int,
) -> FunnelReach:
    """Furthest level per user and the step times of the user's earliest attempt at that level."""
    n_attempts = len(level)
    new_user = np.concatenate(([True], attempt_users[1:] != attempt_users[:-1]))
    first_of_user = np.flatnonzero(new_user)
    user_level = np.maximum.reduceat(level, first_of_user)
    attempts_per_user = np.diff(np.append(first_of_user, n_attempts))
    is_furthest = level == np.repeat(user_level, attempts_per_user)
    candidates = np.where(is_furthest, np.arange(n_attempts), n_attempts)
    best = np.minimum.reduceat(candidates, first_of_user)

    step_times = []
    for step in range(n_steps):
        users_here = best[user_level > step]
        if step < len(alive_at_step):
            position = np.searchsorted(alive_at_step[step], users_here)
            step_times.append(times_at_step[step][position] + range_start)
        else:
            step_times.append(np.empty(0, dtype=np.int64))
    return FunnelReach(attempt_users[first_of_user], user_level, tuple(step_times))


def analyse_funnel(
    log: EventLog, funnel: FunnelDefinition, *, range_start: int, range_end: int, now: int
) -> dict:
    """The funnel report (docs/methods.md#funnel-report) of ``funnel`` for entries in ``[range_start, range_end)``.

    ``now`` (epoch seconds) only decides ``incomplete_cohort``: true when an entry's window may
    still be open, i.e. ``range_end > now - window_seconds``.
    """
    reach = funnel_reach(log, funnel, range_start=range_start, range_end=range_end)
    return progress_report(funnel, reach, range_end=range_end, now=now)
