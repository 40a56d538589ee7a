"""Shared by the funnel and segment tests: event logs from tuples, and the plain funnel reference.

Events are ``(user, event name, epoch seconds)`` tuples (``tests.fakes.events.Event`` is one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from exporter.events.log import EventLog


def make_log(events: Sequence[tuple[str, str, int]]) -> EventLog:
    """An EventLog holding ``events``, names coded in order of first appearance."""
    users = {user: code for code, user in enumerate(dict.fromkeys(u for u, _, _ in events))}
    names = {name: code for code, name in enumerate(dict.fromkeys(n for _, n, _ in events))}
    return EventLog.build(
        np.array([users[user] for user, _, _ in events], dtype=np.int32),
        np.array([names[name] for _, name, _ in events], dtype=np.int32),
        np.array([ts for _, _, ts in events], dtype=np.int64),
        list(users),
        list(names),
    )


def reference_reach(events: Sequence[tuple[str, str, int]], steps: Sequence[str], window: int, start: int,
                    end: int, step_windows: Sequence[int | None] | None = None) -> dict[str, list[int]]:
    """Per user who entered in [start, end): the step times of the earliest furthest attempt.

    Written plainly, user by user and attempt by attempt, as the obviously correct reading of
    docs/methods.md#funnel-semantics: the next step is the earliest matching event strictly after the
    current one, within the window of the attempt's start (and the step's own window, if any).
    """
    step_windows = list(step_windows or [None] * (len(steps) - 1))
    by_user = defaultdict(list)
    for user, name, ts in events:
        by_user[user].append((ts, name))
    reach = {}
    for user, evs in by_user.items():
        best = None
        for t0, name in sorted(evs):
            if name != steps[0] or not start <= t0 < end:
                continue
            times = [t0]
            for step, step_window in zip(steps[1:], step_windows):
                limit = t0 + window if step_window is None else min(t0 + window, times[-1] + step_window)
                later = [t for t, n in evs if n == step and times[-1] < t <= limit]
                if not later:
                    break
                times.append(min(later))
            if best is None or len(times) > len(best):
                best = times
        if best is not None:
            reach[user] = best
    return reach
