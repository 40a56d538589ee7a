"""Per-user activity answered from the in-memory event log: the file backend's segment kernels.

The measures are defined in :mod:`exporter.analysis.segments` (which also applies the rules and
makes the report); this module computes them with numpy, plus the identified user counts of the
usage and feature-adoption areas and the daily user counts that are forecast. The ClickHouse
backend answers the same questions in SQL (:mod:`exporter.events.clickhouse_queries`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from exporter.analysis.breakdowns import EVERYONE, Selection
from exporter.analysis.segments import (
    DAY_SECONDS,
    LOOKBACK_DAYS,
    WINDOW_DAYS,
    SegmentThresholds,
    UserActivity,
    segments_report,
)
from exporter.analysis.usage import DailyUsers, UserCounts
from exporter.events.log import EventLog
from exporter.events.log_dimensions import select_users

# Distinct-pair counting uses a dense bitmap when it costs at most this many bytes per key,
# else a sort: a bitmap byte is ~1 ns to clear and scan, a sorted int64 key ~60 ns.
_DENSE_BYTES_PER_KEY = 16
_DENSE_MIN_BYTES = 1 << 20
# Events read at a time where the whole history is needed: bounds the working memory.
_CHUNK_EVENTS = 1 << 18


def user_activity(
    log: EventLog,
    *,
    now: int,
    meaningful_events: Collection[str] | None = None,
    feature_events: Mapping[str, str] | None = None,
    selection: Selection = EVERYONE,
) -> UserActivity:
    """L28, L28_prev, R, B, age and gap for every user active at least once up to ``now`` whom
    ``selection`` keeps (values as of ``now``), with each one's breakdown value.

    Memory: age and recency need the whole history, which is read a chunk at a time; the other
    measures need only the events of the lookback, the log's last days (it is in time order).
    The working memory is thus a little per event of the lookback, not per event of the log.
    """
    end = int(np.searchsorted(log.timestamps, now, side="right"))
    today = now // DAY_SECONDS
    n_users = len(log.user_names)
    never = np.iinfo(np.int64).max
    meaningful = None if meaningful_events is None else _event_mask(log, meaningful_events)

    first_seen_ago = np.zeros(n_users, dtype=np.int64)
    recency = np.full(n_users, never, dtype=np.int64)
    for first in range(0, end, _CHUNK_EVENTS):
        stop = min(first + _CHUNK_EVENTS, end)
        users = log.user_ids[first:stop]
        days_ago = today - log.timestamps[first:stop] // DAY_SECONDS
        np.maximum.at(first_seen_ago, users, days_ago)
        if meaningful is not None:  # else every event counts: no mask to gather and apply
            keep = meaningful[log.event_ids[first:stop]]
            users, days_ago = users[keep], days_ago[keep]
        np.minimum.at(recency, users, days_ago)
    chosen = select_users(log, selection, now + 1)
    active_ever = recency != never
    population = np.flatnonzero(active_ever if chosen.selected is None else active_ever & chosen.selected)

    lookback = int(np.searchsorted(log.timestamps, (today - LOOKBACK_DAYS + 1) * DAY_SECONDS, side="left"))
    lookback = min(lookback, end)
    users = log.user_ids[lookback:end].astype(np.int64)
    events = log.event_ids[lookback:end]
    days_ago = today - log.timestamps[lookback:end] // DAY_SECONDS  # all below LOOKBACK_DAYS
    if meaningful is None:
        active_users, active_days_ago = users, days_ago
    else:
        active = meaningful[events]
        active_users, active_days_ago = users[active], days_ago[active]
    day_keys = _unique_keys(active_users * LOOKBACK_DAYS + active_days_ago, n_users * LOOKBACK_DAYS)
    del active_users, active_days_ago
    day_user, day = np.divmod(day_keys, LOOKBACK_DAYS)
    l28 = np.bincount(day_user[day < WINDOW_DAYS], minlength=n_users)
    l28_prev = np.bincount(
        day_user[(day >= WINDOW_DAYS) & (day < 2 * WINDOW_DAYS)], minlength=n_users
    )
    gap = _median_gap(day_user, day, n_users)

    feature_of_event, n_features = _feature_codes(log, meaningful_events, feature_events)
    feature = feature_of_event[events]
    used = (feature >= 0) & (days_ago < WINDOW_DAYS)
    feature_keys = _unique_keys(users[used] * n_features + feature[used], n_users * n_features)
    breadth = np.bincount(feature_keys // max(n_features, 1), minlength=n_users)

    return UserActivity(
        users=population,
        l28=l28[population],
        l28_prev=l28_prev[population],
        recency=recency[population],
        breadth=breadth[population],
        age=first_seen_ago[population],
        gap=gap[population],
        groups=None if chosen.value_codes is None else chosen.value_codes[population],
        values=chosen.values,
    )


def user_counts(log: EventLog, start: int, end: int, *, meaningful_events: Collection[str] | None = None,
                selection: Selection = EVERYONE) -> UserCounts:
    """Users seen before ``end`` and users with a (meaningful) event in ``[start, end)``, of the
    users ``selection`` keeps (their values as of ``end``), per value with a breakdown."""
    chosen = select_users(log, selection, end)
    groups = chosen.group_of_user()
    first, stop = np.searchsorted(log.timestamps, [start, end], side="left")
    active = log.user_ids[first:stop]
    if meaningful_events is not None:
        active = active[_event_mask(log, meaningful_events)[log.event_ids[first:stop]]]
    total = _per_group(_unique_keys(log.user_ids[:stop], len(log.user_names)), groups, chosen.n_groups)
    active = _per_group(_unique_keys(active, len(log.user_names)), groups, chosen.n_groups)
    by_value = None
    if chosen.value_codes is not None:
        by_value = {value: (int(t), int(a)) for value, t, a in zip(chosen.values, total, active) if t}
    return UserCounts(int(total.sum()), int(active.sum()), by_value)


def _per_group(users: np.ndarray, group_of_user: np.ndarray | None, n_groups: int) -> np.ndarray:
    """How many of the distinct ``users`` each group holds (all in group 0 without groups; a
    user of group -1 is not counted)."""
    if group_of_user is None:
        return np.array([len(users)], dtype=np.int64)
    groups = group_of_user[users]
    return np.bincount(groups[groups >= 0], minlength=n_groups)


def feature_unique_users(
    log: EventLog, event_names: Collection[str], start: int, end: int, *, selection: Selection = EVERYONE
) -> dict[str, int]:
    """Distinct users per event name in ``[start, end)`` of the users ``selection`` keeps; 0 for
    names absent from the log."""
    names = list(dict.fromkeys(event_names))
    slot_of_event = np.full(len(log.event_names), -1, dtype=np.int64)
    for slot, name in enumerate(names):
        code = log.event_code(name)
        if code is not None:
            slot_of_event[code] = slot
    first, stop = np.searchsorted(log.timestamps, [start, end], side="left")
    slot = slot_of_event[log.event_ids[first:stop]]
    users = log.user_ids[first:stop]
    selected = select_users(log, Selection(selection.filters), end).selected
    wanted = (slot >= 0) if selected is None else (slot >= 0) & selected[users]
    n_users = len(log.user_names)
    users = users[wanted]
    keys = _unique_keys(slot[wanted] * n_users + users, len(names) * n_users)
    counts = np.bincount(keys // max(n_users, 1), minlength=len(names))
    return {name: int(count) for name, count in zip(names, counts.tolist())}


def daily_users(
    log: EventLog, event_names: Collection[str], start: int, end: int, *,
    meaningful_events: Collection[str] | None = None,
) -> DailyUsers:
    """Distinct users per UTC day of ``[start, end)`` (``start`` a UTC midnight; the last day may be
    partial): with a meaningful event, and with each event name (zeros for names absent from the log).

    Every counted event becomes one key ``(day, slot, user)`` -- slot 0 for a meaningful event,
    slot ``k`` for the ``k``-th name -- and the distinct keys are counted per ``(day, slot)``.
    """
    if start % DAY_SECONDS:
        raise ValueError("daily counts start at a UTC midnight")
    names = list(dict.fromkeys(event_names))
    n_days, slots, n_users = max(0, -(-(end - start) // DAY_SECONDS)), len(names) + 1, len(log.user_names)
    slot_of_event = np.full(len(log.event_names), -1, dtype=np.int64)
    for slot, name in enumerate(names, start=1):
        code = log.event_code(name)
        if code is not None:
            slot_of_event[code] = slot
    first, stop = np.searchsorted(log.timestamps, [start, end], side="left")
    day_row = (log.timestamps[first:stop] - start) // DAY_SECONDS * slots
    users = log.user_ids[first:stop].astype(np.int64)
    events = log.event_ids[first:stop]
    slot = slot_of_event[events]
    named = slot >= 0
    if meaningful_events is None:  # every event is meaningful: no mask to gather
        rows, owners = np.concatenate((day_row, day_row[named] + slot[named])), np.concatenate((users, users[named]))
    else:
        meaningful = _event_mask(log, meaningful_events)[events]
        rows = np.concatenate((day_row[meaningful], day_row[named] + slot[named]))
        owners = np.concatenate((users[meaningful], users[named]))
    keys = _unique_keys(rows * n_users + owners, n_days * slots * n_users)
    counts = np.bincount(keys // max(n_users, 1), minlength=n_days * slots).reshape(n_days, slots)
    return DailyUsers.of(counts.tolist(), names)


def feature_dates(log: EventLog, event_names: Collection[str], end: int) -> dict[str, tuple[int, int] | None]:
    """First and last time of each event name before ``end``; None for names without events."""
    stop = int(np.searchsorted(log.timestamps, end, side="left"))
    events = log.event_ids[:stop]
    dates: dict[str, tuple[int, int] | None] = {}
    for name in dict.fromkeys(event_names):
        code = log.event_code(name)
        found = np.flatnonzero(events == code) if code is not None else ()
        dates[name] = (int(log.timestamps[found[0]]), int(log.timestamps[found[-1]])) if len(found) else None
    return dates


# --- helpers --------------------------------------------------------------------------------

def _event_mask(log: EventLog, names: Collection[str] | None) -> np.ndarray:
    """Boolean per event code: is it one of ``names`` (all events when ``names`` is None)."""
    if names is None:
        return np.ones(len(log.event_names), dtype=bool)
    mask = np.zeros(len(log.event_names), dtype=bool)
    codes = [code for code in map(log.event_code, names) if code is not None]
    mask[codes] = True
    return mask


def _feature_codes(
    log: EventLog,
    meaningful_events: Collection[str] | None,
    feature_events: Mapping[str, str] | None,
) -> tuple[np.ndarray, int]:
    """Feature code per event code (-1: no feature) and the number of features."""
    if feature_events is None:
        meaningful = _event_mask(log, meaningful_events)
        feature_events = {name: name for name, keep in zip(log.event_names, meaningful) if keep}
    features = {name: index for index, name in enumerate(dict.fromkeys(feature_events.values()))}
    feature_of_event = np.full(len(log.event_names), -1, dtype=np.int64)
    for event, feature in feature_events.items():
        code = log.event_code(event)
        if code is not None:
            feature_of_event[code] = features[feature]
    return feature_of_event, len(features)


def _unique_keys(keys: np.ndarray, key_space: int) -> np.ndarray:
    """Sorted distinct values of non-negative integer ``keys``, all below ``key_space``."""
    if key_space <= max(_DENSE_MIN_BYTES, _DENSE_BYTES_PER_KEY * len(keys)):
        present = np.zeros(key_space, dtype=bool)
        present[keys] = True
        return np.flatnonzero(present)
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def _median_gap(day_user: np.ndarray, day: np.ndarray, n_users: int) -> np.ndarray:
    """Per user, median days between consecutive active days (NaN with fewer than two).

    ``day_user``/``day`` are distinct (user, days-ago) pairs sorted by user, then day.
    """
    gap = np.full(n_users, np.nan)
    same_user = day_user[1:] == day_user[:-1]
    gap_user = day_user[1:][same_user]
    if not len(gap_user):
        return gap
    # Sorting (user, gap) keys orders each user's gaps (gaps are below LOOKBACK_DAYS). The keys
    # are already in user order, which the stable sort (timsort) exploits: ~6x faster here.
    keys = np.sort(gap_user * LOOKBACK_DAYS + (day[1:] - day[:-1])[same_user], kind="stable")
    sorted_gap = keys % LOOKBACK_DAYS
    first = np.flatnonzero(np.concatenate(([True], gap_user[1:] != gap_user[:-1])))
    count = np.diff(np.append(first, len(keys)))
    owner = keys[first] // LOOKBACK_DAYS
    gap[owner] = (sorted_gap[first + (count - 1) // 2] + sorted_gap[first + count // 2]) / 2.0
    return gap


def analyse_segments(
    log: EventLog,
    *,
    now: int,
    thresholds: SegmentThresholds = SegmentThresholds(),
    meaningful_events: Collection[str] | None = None,
    feature_events: Mapping[str, str] | None = None,
) -> dict:
    """The segments report (docs/api.md#user-segments): segment sizes, engagement, definitions, power-user curve."""
    activity = user_activity(
        log, now=now, meaningful_events=meaningful_events, feature_events=feature_events
    )
    return segments_report(activity, now=now, thresholds=thresholds, meaningful_events=meaningful_events,
                           feature_events=feature_events)
