"""Dimensions from the in-memory event log: the file backend's kernel for filters and breakdowns.

A user's value of a dimension is the value of its property on the user's **latest** event
carrying it, up to the end of the range (events stamped before ``end``; of carrying events in
the same second, the greatest value text wins, so that the ClickHouse backend, which knows no
file order, agrees); a user without one has the value ``(none)``. A filter keeps the users whose
value is one of the values asked for (the same property repeated: OR; different properties:
AND); a breakdown gives every user its value's code, and the sections rank the groups
(:func:`exporter.analysis.breakdowns.rank_groups`).

Everything is per user code (``log.user_names``) and vectorised: one pass over the events that
carry the property, then arrays of one entry per user, so that a section can be computed per
group with one ``bincount`` over these codes. Value texts are the property's
(:class:`~exporter.events.log.PropertyColumn`); the texts ``(none)`` and ``(other)`` are reserved:
an event whose value is the text ``(none)`` counts as not carrying the property, and a value
``(other)`` is always merged into the ``(other)`` group.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from exporter.analysis.breakdowns import NONE, Selection
from exporter.events.log import EventLog

NO_VALUE = -1  # a user's code when it has no value


@dataclass(frozen=True)
class UserValues:
    """Each user's value of one property: ``values[codes[user]]``, or ``(none)`` where
    ``codes[user]`` is ``NO_VALUE``."""

    codes: np.ndarray  # int32, one per user code
    values: tuple[str, ...]  # the property's value texts

    def label(self, code: int) -> str:
        return NONE if code == NO_VALUE else self.values[code]


def user_values(log: EventLog, property_name: str, end: int) -> UserValues:
    """Every user's value of ``property_name`` as of ``end`` (epoch seconds, exclusive)."""
    column = _column(log, property_name)
    stop = int(np.searchsorted(log.timestamps, end, side="left"))
    positions, codes = column.carriers(stop)
    none = column.code(NONE)
    if none is not None:
        keep = codes != none
        positions, codes = positions[keep], codes[keep]
    users = log.user_ids[positions]
    times = log.timestamps[positions]
    n_users = len(log.user_names)
    # Each user's latest second with a carrying event (the log is in time order, but a max is
    # exact whatever the order), then the greatest value text among its events of that second.
    latest = np.full(n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, users, times)
    last_second = times == latest[users]
    by_text = np.argsort(np.array(column.values, dtype=object)).astype(np.int64)  # rank -> code
    text_rank = np.empty_like(by_text)
    text_rank[by_text] = np.arange(len(by_text))
    best = np.full(n_users, -1, dtype=np.int64)
    np.maximum.at(best, users[last_second], text_rank[codes[last_second]])
    result = np.full(n_users, NO_VALUE, dtype=np.int32)
    has = best >= 0
    result[has] = by_text[best[has]]
    return UserValues(result, column.values)


def filter_users(log: EventLog, filters: Iterable[tuple[str, Collection[str]]], end: int) -> np.ndarray:
    """Boolean per user code: whether the user passes every ``(property, values)`` filter, i.e.
    has, for each property, one of its values (``(none)``: no value) as of ``end``.

    A value no user has selects nobody; a property listed twice must match both lists (the
    caller merges repetitions of one dimension into one list: OR).
    """
    selected = np.ones(len(log.user_names), dtype=bool)
    for property_name, wanted in filters:
        values = user_values(log, property_name, end)
        column = _column(log, property_name)
        # accepted[code] for the value codes, and accepted[-1] (where NO_VALUE lands) for (none)
        accepted = np.zeros(len(values.values) + 1, dtype=bool)
        for text in wanted:
            code = NO_VALUE if text == NONE else column.code(text)
            if code is not None:
                accepted[code] = True
        selected &= accepted[values.codes]
    return selected


def _column(log: EventLog, property_name: str):
    try:
        return log.properties[property_name]
    except KeyError:
        raise KeyError(f"property {property_name!r} was not loaded (loaded: {sorted(log.properties)})") from None


@dataclass(frozen=True)
class UserSelection:
    """What a :class:`~exporter.analysis.breakdowns.Selection` means for a log's users: which of
    them a section counts (None: all) and, with a breakdown, each user's value code
    (``values[code]``; ``(none)`` is the last value)."""

    selected: np.ndarray | None  # bool, one per user code
    value_codes: np.ndarray | None  # int64, one per user code
    values: tuple[str, ...]

    def group_of_user(self) -> np.ndarray | None:
        """Per user code: its value code, -1 where the user is not selected (the kernels' groups);
        None without a breakdown or a filter."""
        if self.value_codes is None and self.selected is None:
            return None
        codes = np.zeros(len(self.selected), dtype=np.int64) if self.value_codes is None else self.value_codes
        return codes if self.selected is None else np.where(self.selected, codes, -1)

    @property
    def n_groups(self) -> int:
        return max(len(self.values), 1)


def select_users(log: EventLog, selection: Selection, end: int) -> UserSelection:
    """The users ``selection`` keeps and their breakdown values, as of ``end`` (exclusive)."""
    filters = [(name, set(values)) for name, values in selection.filters]
    selected = filter_users(log, filters, end) if filters else None
    if selection.breakdown is None:
        return UserSelection(selected, None, ())
    values = user_values(log, selection.breakdown, end)
    codes = np.where(values.codes == NO_VALUE, len(values.values), values.codes).astype(np.int64)
    return UserSelection(selected, codes, (*values.values, NONE))
