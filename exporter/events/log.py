"""The columnar in-memory event log that funnels, segments and usage analyses read.

Each event is three numbers in three parallel numpy arrays: a user code and an event code
(indices into tuples of names, i.e. dictionary encoding) and an int64 timestamp in epoch
seconds. Events are sorted by timestamp; ties keep their input (file) order. User codes are
int32; event codes are int32 from :meth:`EventLog.build`, and the narrowest signed type that
holds them from the file loader (int8 up to 128 event names): use them as indices or compare
them, and widen them before arithmetic.

Event properties (contract section 6) are columns too, one :class:`PropertyColumn` per property
that was asked for: a code per event into the property's tuple of value texts, in the narrowest
signed integer type that holds the codes (one byte for up to 128 distinct values). A property on
most events (a team, a role) is stored densely, ``-1`` marking the events without it; a rare one
(an experiment exposure's ``variant``) sparsely, as the positions of the events carrying it plus
their codes, whichever takes fewer bytes.

Memory: the three columns cost 13 bytes per event (4 + 1 + 8, up to 128 event names; 16 at
most); a dense property one byte per event (up to 128 values), a sparse one 9 bytes per event
that carries it. Each distinct user or
event name adds about 65 bytes (a short ``str`` and its tuple slot). What a load costs on top,
and what the process holds after it, is measured by ``bench/events_file.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

USER_CODE_DTYPE = np.int32
EVENT_CODE_DTYPE = np.int32  # the widest; the loader's logs may use a narrower one
EVENT_CODE_DTYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32))
TIMESTAMP_DTYPE = np.int64
POSITION_DTYPE = np.int64
ABSENT = -1  # a dense property's code for an event without it


def value_code_dtype(n_values: int) -> np.dtype:
    """The narrowest signed integer type holding codes ``0 .. n_values - 1`` and ``ABSENT``."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_values <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError("too many distinct property values")


@dataclass(frozen=True, eq=False)
class PropertyColumn:
    """One event property of a log, dictionary-encoded: event ``i`` has value ``values[code]``.

    Dense (``positions is None``): ``codes`` has one entry per event, ``ABSENT`` where the event
    does not carry the property. Sparse: ``positions`` are the ascending indices of the events
    that carry it and ``codes`` their codes. Either way the arrays are read-only.
    """

    values: tuple[str, ...]
    codes: np.ndarray
    positions: np.ndarray | None = None
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "_index", {value: code for code, value in enumerate(self.values)})
        if len(self._index) != len(self.values):
            raise ValueError("PropertyColumn.values must be distinct")
        if self.codes.ndim != 1 or self.codes.dtype.kind != "i":
            raise TypeError("PropertyColumn.codes must be a 1-D signed integer array")
        if self.positions is not None:
            if self.positions.dtype != POSITION_DTYPE or len(self.positions) != len(self.codes):
                raise TypeError("PropertyColumn.positions must be int64, one per code")
            self.positions.setflags(write=False)
        self.codes.setflags(write=False)

    @classmethod
    def from_codes(cls, codes: np.ndarray, values: Sequence[str]) -> PropertyColumn:
        """A column from one code per event (``ABSENT`` where absent), dense or sparse, whichever
        is smaller."""
        dtype = value_code_dtype(len(values))
        codes = np.asarray(codes)
        carriers = np.flatnonzero(codes != ABSENT)
        if sparse_is_smaller(len(carriers), len(codes), dtype):
            return cls(tuple(values), codes[carriers].astype(dtype), carriers.astype(POSITION_DTYPE))
        return cls(tuple(values), codes.astype(dtype))

    @property
    def is_sparse(self) -> bool:
        return self.positions is not None

    def code(self, value: str) -> int | None:
        """The code of the value text ``value``, or None when no event carries it."""
        return self._index.get(value)

    def carriers(self, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, codes)`` of the events (among the first ``stop``) carrying the property,
        positions ascending."""
        if self.positions is not None:
            end = len(self.positions) if stop is None else int(np.searchsorted(self.positions, stop))
            return self.positions[:end], self.codes[:end]
        codes = self.codes if stop is None else self.codes[:stop]
        positions = np.flatnonzero(codes != ABSENT)
        return positions, codes[positions]

    def codes_at(self, positions: np.ndarray) -> np.ndarray:
        """The code of each event at ``positions`` (any order), ``ABSENT`` where it has none."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.positions is None:
            return self.codes[positions]
        found = np.searchsorted(self.positions, positions)
        inside = found < len(self.positions)
        hit = np.zeros(len(positions), dtype=bool)
        hit[inside] = self.positions[found[inside]] == positions[inside]
        result = np.full(len(positions), ABSENT, dtype=self.codes.dtype)
        result[hit] = self.codes[found[hit]]
        return result

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays plus the value texts."""
        arrays = self.codes.nbytes + (0 if self.positions is None else self.positions.nbytes)
        return arrays + sum(map(sys.getsizeof, self.values)) + sys.getsizeof(self.values)


def sparse_is_smaller(carriers: int, events: int, code_dtype: np.dtype) -> bool:
    """Whether ``carriers`` (position, code) pairs take fewer bytes than a code per event."""
    width = np.dtype(code_dtype).itemsize
    return carriers * (np.dtype(POSITION_DTYPE).itemsize + width) < events * width


@dataclass(frozen=True, eq=False)
class EventLog:
    """Immutable, timestamp-sorted columns of identified events.

    ``user_ids[i]`` and ``event_ids[i]`` index ``user_names`` and ``event_names``;
    ``timestamps[i]`` is epoch seconds (UTC). ``properties`` maps a property name to its column
    (only the properties that were asked for when loading). The arrays are read-only. Every name
    is used by at least one event when the log comes from :meth:`build` or the file loader.
    """

    user_ids: np.ndarray
    event_ids: np.ndarray
    timestamps: np.ndarray
    user_names: tuple[str, ...]
    event_names: tuple[str, ...]
    properties: Mapping[str, PropertyColumn] = field(default_factory=dict)
    _event_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = {
            "user_ids": (self.user_ids, (np.dtype(USER_CODE_DTYPE),)),
            "event_ids": (self.event_ids, EVENT_CODE_DTYPES),
            "timestamps": (self.timestamps, (np.dtype(TIMESTAMP_DTYPE),)),
        }
        for name, (column, dtypes) in columns.items():
            if not isinstance(column, np.ndarray) or column.dtype not in dtypes or column.ndim != 1:
                raise TypeError(f"EventLog.{name} must be a 1-D {' or '.join(d.name for d in dtypes)} array")
        size = len(self.timestamps)
        if len(self.user_ids) != size or len(self.event_ids) != size:
            raise ValueError("EventLog columns must have the same length")
        _check_codes("user_ids", self.user_ids, len(self.user_names))
        _check_codes("event_ids", self.event_ids, len(self.event_names))
        if size > 1 and not bool(np.all(self.timestamps[1:] >= self.timestamps[:-1])):
            raise ValueError("EventLog.timestamps must be sorted ascending; use EventLog.build")
        for name, column in self.properties.items():
            _check_property(name, column, size)
        self._freeze()

    def _freeze(self) -> None:
        for column in (self.user_ids, self.event_ids, self.timestamps):
            column.setflags(write=False)
        object.__setattr__(self, "user_names", tuple(self.user_names))
        object.__setattr__(self, "event_names", tuple(self.event_names))
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))
        object.__setattr__(
            self, "_event_index", {name: code for code, name in enumerate(self.event_names)}
        )

    @classmethod
    def trusted(
        cls,
        user_ids: np.ndarray,
        event_ids: np.ndarray,
        timestamps: np.ndarray,
        user_names: Sequence[str],
        event_names: Sequence[str],
        properties: Mapping[str, PropertyColumn],
    ) -> EventLog:
        """A log from columns that already hold the invariants (the file loader's), unchecked:
        checking is linear in the events, and the loader publishes a log after every append."""
        log = cls.__new__(cls)
        for name, value in (("user_ids", user_ids), ("event_ids", event_ids), ("timestamps", timestamps),
                            ("user_names", user_names), ("event_names", event_names),
                            ("properties", properties)):
            object.__setattr__(log, name, value)
        log._freeze()
        return log

    @classmethod
    def build(
        cls,
        user_ids: np.ndarray,
        event_ids: np.ndarray,
        timestamps: np.ndarray,
        user_names: Sequence[str],
        event_names: Sequence[str],
        properties: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    ) -> EventLog:
        """Make a log from unsorted columns: stable sort by timestamp, drop unused names.

        ``properties`` maps a name to ``(codes, values)``: one code per event into ``values``,
        ``ABSENT`` (-1) where the event does not carry the property.

        Dropping names that no event refers to (e.g. a user whose only line was rejected after
        its name had been encoded) keeps ``len(user_names)`` equal to the number of users seen.
        """
        user_ids = np.asarray(user_ids, dtype=USER_CODE_DTYPE)
        event_ids = np.asarray(event_ids, dtype=EVENT_CODE_DTYPE)
        timestamps = np.asarray(timestamps, dtype=TIMESTAMP_DTYPE)
        codes = {name: np.asarray(c, dtype=np.int64) for name, (c, _) in (properties or {}).items()}
        if len(timestamps) > 1 and not bool(np.all(timestamps[1:] >= timestamps[:-1])):
            # Timsort (numpy's stable sort for int64) is linear on the long sorted runs that
            # append-only event files consist of.
            order = np.argsort(timestamps, kind="stable")
            user_ids, event_ids, timestamps = user_ids[order], event_ids[order], timestamps[order]
            codes = {name: c[order] for name, c in codes.items()}
        user_ids, user_names = _drop_unused_names(user_ids, user_names)
        event_ids, event_names = _drop_unused_names(event_ids, event_names)
        columns = {name: PropertyColumn.from_codes(codes[name], values)
                   for name, (_, values) in (properties or {}).items()}
        return cls(user_ids, event_ids, timestamps, tuple(user_names), tuple(event_names), columns)

    @classmethod
    def empty(cls, properties: Sequence[str] = ()) -> EventLog:
        """A log with no events (and no values of ``properties``)."""
        return cls(
            np.empty(0, USER_CODE_DTYPE), np.empty(0, EVENT_CODE_DTYPE),
            np.empty(0, TIMESTAMP_DTYPE), (), (),
            {name: PropertyColumn((), np.empty(0, np.int8)) for name in properties},
        )

    def event_code(self, name: str) -> int | None:
        """The code of event ``name``, or None when no event in the log has that name."""
        return self._event_index.get(name)

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the log: the columns, the properties and the name strings."""
        columns = self.user_ids.nbytes + self.event_ids.nbytes + self.timestamps.nbytes
        names = sum(map(sys.getsizeof, self.user_names)) + sum(map(sys.getsizeof, self.event_names))
        tuples = sys.getsizeof(self.user_names) + sys.getsizeof(self.event_names)
        properties = sum(column.nbytes for column in self.properties.values())
        return columns + names + tuples + sys.getsizeof(self._event_index) + properties


def _check_codes(name: str, codes: np.ndarray, n_names: int) -> None:
    if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= n_names):
        raise ValueError(f"EventLog.{name} holds codes outside 0..{n_names - 1}")


def _check_property(name: str, column: PropertyColumn, size: int) -> None:
    codes, positions = column.codes, column.positions
    if positions is None:
        if len(codes) != size:
            raise ValueError(f"EventLog property {name!r} must have a code per event")
        low = ABSENT
    else:
        low = 0
        if len(positions) and (int(positions[0]) < 0 or int(positions[-1]) >= size
                               or not bool(np.all(positions[1:] > positions[:-1]))):
            raise ValueError(f"EventLog property {name!r}: positions must ascend within 0..{size - 1}")
    if len(codes) and (int(codes.min()) < low or int(codes.max()) >= len(column.values)):
        raise ValueError(f"EventLog property {name!r} holds codes outside its values")


def _drop_unused_names(codes: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    used = np.bincount(codes, minlength=len(names)) > 0
    if bool(used.all()):
        return codes, list(names)
    new_code = np.cumsum(used, dtype=np.int64) - 1
    kept = [name for name, keep in zip(names, used.tolist()) if keep]
    return new_code[codes].astype(codes.dtype), kept
