"""Load identified product events from a JSON Lines or CSV file, optionally gzip-compressed, and
follow the file as it grows.

Formats (docs/upstreams.md#events-file), chosen by file name: ``.jsonl``, ``.json``, ``.ndjson``
are JSON Lines (one object per line: ``{"user_id": ..., "event": ..., "timestamp": ...,
"properties": ...}``);
``.csv`` is CSV with a header naming ``user_id``, ``event`` and ``timestamp`` (in any order;
every other column is a property). A trailing ``.gz`` means gzip, read transparently.

Field rules:

- ``user_id``: non-empty string; a JSON integer is accepted and read as its decimal string, so
  ``123`` in JSON and ``123`` in CSV name the same user. ``event``: non-empty string.
- ``timestamp``: ISO 8601 with a UTC offset (``Z`` allowed; a naive time is rejected because its
  zone is unknown), or epoch seconds as a number or a decimal string. Stored at one-second
  resolution: fractional seconds are floored. Values outside years 1..9999 are rejected.
- ``properties`` (``props`` is the same field): an object whose string, number and boolean
  values are kept as their JSON text (``"payments"``, ``3``, ``2.5``, ``true`` become
  ``payments``, ``3``, ``2.5``, ``true``); other values (objects, arrays, null), an empty string
  and a value that is not valid UTF-8 count as absent, never as a malformed line. In CSV a
  property is a column beyond the three above, an empty cell meaning absent. Only the properties
  asked for (the ``properties`` argument) are kept, dictionary-encoded (:mod:`.log`).

A line that breaks a rule is skipped and counted in ``malformed_lines``; it never fails the load.
Blank lines are ignored and not counted. Problems with the file itself (unknown extension, a CSV
header without the required columns, a corrupt gzip stream) raise :class:`EventsFileError`;
a missing or unreadable file raises the usual ``OSError``.

Following the file (:class:`EventsFile`): event files are usually append-only (a shipper writes
lines and rotates), so after the first full read only the bytes appended since are read, parsed
and merged into the columns (in time order, exactly as a full read of the grown file would
place them). A line still being written (no newline yet; in CSV, a record whose quoted field
is still open, or whose line ends in a ``\r`` that a ``\n`` may follow) is read, but as
provisional: it is undone and read again, completed, with the next append (if its time put it
in the middle of the log, the next change is read in full instead). A file that was replaced
(new inode), truncated, shrunk, rewritten in place (same size, new modification time, or its
first or last read bytes changed) is read again in full, and so is a ``.gz`` file on every
change (a compressed stream cannot be resumed cheaply).

Speed: the file is read in bounded chunks of whole lines (about 1 MiB); each chunk's lines are
parsed by orjson (the standard library's parser gives its verdict on the lines orjson refuses,
e.g. NaN or invalid UTF-8 outside the names, and reads again those where orjson would turn an
integer beyond 64 bits into a float), names are dictionary-encoded per chunk with dict lookups
that run in C, and a chunk's timestamps are parsed together with numpy for the common
``YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)`` shape and for epoch integers
(``datetime.fromisoformat`` decides only the unusual rest). Memory: the columns grow in place
(doubling their capacity; pages not yet written cost nothing) and a chunk's Python objects are
freed before the next, so a load peaks at the columns plus a sort's index when the file is not
in time order; the memory the parse used is handed back afterwards (``bench/events_file.py``
measures both).
"""

from __future__ import annotations

import bisect
import csv
import ctypes
import gzip
import json
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from itertools import compress, repeat
from operator import itemgetter
from typing import IO, Any, NamedTuple

import numpy as np
import orjson

from exporter.events.log import (
    ABSENT,
    POSITION_DTYPE,
    EventLog,
    PropertyColumn,
    sparse_is_smaller,
    value_code_dtype,
)

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_SUFFIXES = (".csv",)
CSV_REQUIRED_COLUMNS = ("user_id", "event", "timestamp")
PROPERTY_FIELDS = ("properties", "props")  # JSON Lines: the first present wins
MAX_REPORTED_ERRORS = 5

_CHUNK_BYTES = 1 << 20  # read and parse this much at a time: ~10,000 lines
_CSV_BATCH_ROWS = 8_192
_GUARD_BYTES = 4_096  # kept from the start and the end of what was read, to notice a rewrite
_MIN_CAPACITY = 1_024
_EXCERPT_CHARS = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_EPOCH_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_BAD_TIMESTAMP = "timestamp is neither ISO 8601 with a UTC offset nor epoch seconds"
_JSON_WHITESPACE = " \t\r\n"
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_EPOCH_TEXT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_NOT_JSON = object()


class EventsFileError(ValueError):
    """The events file as a whole cannot be read (format, header or compression)."""


@dataclass(frozen=True)
class LoadResult:
    """A loaded log plus what was wrong with the lines that were skipped, and what the read cost."""

    log: EventLog
    malformed_lines: int
    total_lines: int  # non-blank data lines (a CSV header is not counted)
    first_errors: list[str]  # up to MAX_REPORTED_ERRORS, "line N: reason", in file order
    kind: str = "full"  # "full": the whole file was read; "append": only the bytes appended
    bytes_read: int = 0
    seconds: float = 0.0  # wall time of this read
    cpu_seconds: float = 0.0  # CPU time of the reading thread


class FileFingerprint(NamedTuple):
    """What changes when a file is rewritten, replaced or appended to; compare to decide on a read."""

    mtime_ns: int
    size: int
    device: int = 0
    inode: int = 0


def file_fingerprint(path: str | os.PathLike[str]) -> FileFingerprint:
    """Modification time (ns), size and identity of ``path``, for cheap change detection."""
    status = os.stat(path)
    return FileFingerprint(status.st_mtime_ns, status.st_size, status.st_dev, status.st_ino)


def load_events_file(path: str | os.PathLike[str], properties: Collection[str] = ()) -> LoadResult:
    """Read every event in ``path`` into an :class:`EventLog` (sorted by timestamp), keeping the
    event properties named in ``properties``."""
    result = EventsFile(path, properties).refresh()
    assert result is not None  # a first read always reads
    return result


class EventsFile:
    """One events file, read in full once and then, as it grows, only what was appended.

    Not thread-safe: one :meth:`refresh` at a time (the file source's lock sees to it). Logs it
    returned stay valid and unchanged whatever later refreshes do.
    """

    def __init__(self, path: str | os.PathLike[str], properties: Collection[str] = ()) -> None:
        self.path = os.fspath(path)
        self.properties = tuple(dict.fromkeys(properties))
        _warm_key_cache(self.properties)
        self._state: _State | None = None
        self.load_seconds: float | None = None  # wall time of the last full read

    def refresh(self, fingerprint: FileFingerprint | None = None) -> LoadResult | None:
        """Blocking: the events as the file holds them now, or None when it is unchanged since
        the last refresh. ``fingerprint`` (taken before reading, so that a change during the read
        is seen next time) defaults to the file's current one."""
        fingerprint = fingerprint or file_fingerprint(self.path)
        state = self._state
        if state is not None and state.fingerprint == fingerprint:
            return None
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            if state is not None and self._appended(state, fingerprint):
                kind, loaded = "append", _read(self.path, state, fingerprint)
            else:
                self._state = None  # its dictionaries go; its columns live on in the last log
                is_csv, compressed = _detect_format(self.path)
                state = _State(self.properties, is_csv, compressed)
                kind, loaded = "full", _read(self.path, state, fingerprint)
        except BaseException:
            self._state = None  # half-read: the next refresh starts again from the beginning
            raise
        self._state = state
        seconds = time.perf_counter() - started
        if kind == "full":
            self.load_seconds = seconds
        return LoadResult(loaded.log, loaded.malformed_lines, loaded.total_lines, loaded.first_errors,
                          kind=kind, bytes_read=loaded.bytes_read, seconds=seconds,
                          cpu_seconds=time.thread_time() - cpu_started)

    def _appended(self, state: _State, now: FileFingerprint) -> bool:
        """Whether the file only grew since ``state`` was read (so reading on from its offset
        gives what a full read would)."""
        before = state.fingerprint
        if (not state.appendable or now.device != before.device or now.inode != before.inode
                or now.size <= before.size or now.size < state.offset):
            return False
        with open(self.path, "rb") as file:
            head = file.read(len(state.head))
            file.seek(state.offset - len(state.guard))
            guard = file.read(len(state.guard))
        return head == state.head and guard == state.guard


# --- file format ----------------------------------------------------------------------------

def _detect_format(path: str) -> tuple[bool, bool]:
    """``(is_csv, is_gzip)`` from the file name."""
    name = path.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[: -len(".gz")]
    if name.endswith(CSV_SUFFIXES):
        return True, compressed
    if name.endswith(JSON_LINES_SUFFIXES):
        return False, compressed
    known = ", ".join(JSON_LINES_SUFFIXES + CSV_SUFFIXES)
    raise EventsFileError(f"{path}: unknown events file type; expected {known} (optionally .gz)")


def _is_unicode(name: str) -> bool:
    """False for text holding lone surrogates (invalid UTF-8 bytes, or JSON "\\udXXX" escapes),
    which could not be written out again as UTF-8 JSON or Prometheus text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True



def _property_text(value: object) -> str | None:
    """A property value as the text it is compared by, or None when it does not count."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else None  # repr: json.dumps' text of a float
    return None


def _excerpt(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    text = repr(value)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


# --- columns that grow ----------------------------------------------------------------------

class _Buffer:
    """A 1-D array that grows at its end. The first ``published`` items were handed out (as
    views, in a log) and are never written again: an operation that would (after a truncation)
    first copies the items to a new array."""

    __slots__ = ("data", "size", "published")

    def __init__(self, dtype: Any, values: np.ndarray | None = None) -> None:
        self.data = np.empty(0, dtype) if values is None else values
        self.size = len(self.data)
        self.published = 0

    def view(self) -> np.ndarray:
        return self.data[: self.size]

    def publish(self) -> np.ndarray:
        self.published = max(self.published, self.size)
        return self.view()

    def reserve(self, capacity: int) -> None:
        if capacity > len(self.data) or self.size < self.published:
            fresh = np.empty(max(capacity, _MIN_CAPACITY), self.data.dtype)
            fresh[: self.size] = self.data[: self.size]
            self.data, self.published = fresh, 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data) or self.size < self.published:
            self.reserve(max(end, 2 * len(self.data)) if end > len(self.data) else len(self.data))
        self.data[self.size: end] = values
        self.size = end

    def truncate(self, size: int) -> None:
        self.size = min(self.size, size)

    def replace(self, values: np.ndarray) -> None:
        self.data, self.size, self.published = values, len(values), 0

    def astype(self, dtype: Any) -> None:
        self.replace(self.view().astype(dtype))


class _PropertyBuffer:
    """One property's codes for a growing run of events: dense (a code per event, ``ABSENT``
    where missing) or sparse (positions and codes of the carriers), whichever is smaller; the
    code type widens as the property's dictionary grows."""

    def __init__(self) -> None:
        self.dtype = np.dtype(np.int8)
        self.events = 0
        self.dense: _Buffer | None = None
        self.positions = _Buffer(POSITION_DTYPE)
        self.codes = _Buffer(self.dtype)

    def carriers(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dense is None:
            return self.positions.view(), self.codes.view()
        codes = self.dense.view()
        positions = np.flatnonzero(codes != ABSENT)
        return positions, codes[positions]

    def as_dense(self) -> np.ndarray:
        if self.dense is not None:
            return self.dense.view()
        codes = np.full(self.events, ABSENT, self.dtype)
        codes[self.positions.view()] = self.codes.view()
        return codes

    def widen(self, n_values: int) -> None:
        """Make the code type hold ``n_values`` values."""
        self.widen_to(value_code_dtype(n_values))

    def widen_to(self, dtype: np.dtype) -> None:
        if dtype.itemsize > self.dtype.itemsize:
            self.dtype = dtype
            (self.codes if self.dense is None else self.dense).astype(dtype)

    def extend(self, events: int, positions: np.ndarray, codes: np.ndarray) -> None:
        """Append ``events`` events, those at ``positions`` (relative) carrying ``codes``."""
        if self.dense is not None:
            block = np.full(events, ABSENT, self.dtype)
            block[positions] = codes
            self.dense.extend(block)
        else:
            self.positions.extend(positions + self.events)
            self.codes.extend(codes.astype(self.dtype, copy=False))
        self.events += events
        if self.dense is None and not sparse_is_smaller(self.codes.size, self.events, self.dtype):
            self._set_dense(self.as_dense())

    def _set_dense(self, codes: np.ndarray) -> None:
        self.dense = _Buffer(self.dtype, codes)
        self.positions, self.codes = _Buffer(POSITION_DTYPE), _Buffer(self.dtype)

    def _set_sparse(self, positions: np.ndarray, codes: np.ndarray) -> None:
        self.dense = None
        self.positions = _Buffer(POSITION_DTYPE, positions.astype(POSITION_DTYPE, copy=False))
        self.codes = _Buffer(self.dtype, codes.astype(self.dtype, copy=False))

    def settle(self) -> None:
        """Turn dense into sparse when that is less than half the bytes (hysteresis: appends
        switch the other way as soon as dense is smaller)."""
        if self.dense is not None:
            carriers = int(np.count_nonzero(self.dense.view() != ABSENT))
            if sparse_is_smaller(2 * carriers, self.events, self.dtype):
                self._set_sparse(*self.carriers())

    def truncate(self, events: int) -> None:
        if self.dense is not None:
            self.dense.truncate(events)
        else:
            keep = int(np.searchsorted(self.positions.view(), events))
            self.positions.truncate(keep)
            self.codes.truncate(keep)
        self.events = min(self.events, events)

    def permute(self, order: np.ndarray) -> None:
        """Reorder the events: new event ``i`` is old event ``order[i]``."""
        if self.dense is not None:
            self.dense.replace(self.dense.view()[order])
            return
        carries = np.zeros(self.events, dtype=bool)
        carries[self.positions.view()] = True
        positions = np.flatnonzero(carries[order])
        old = order[positions]
        codes = self.codes.view()[np.searchsorted(self.positions.view(), old)]
        self._set_sparse(positions, codes)

    def merge(self, at: np.ndarray, other: _PropertyBuffer) -> None:
        """Merge ``other``'s events in, other's event ``j`` going before this buffer's event
        ``at[j]`` (``at`` ascending); see :meth:`_Columns.merge`."""
        self.widen_to(other.dtype)
        if self.dense is not None:
            self.dense.replace(np.insert(self.dense.view(), at, other.as_dense().astype(self.dtype)))
        else:
            positions, codes = self.carriers()
            other_positions, other_codes = other.carriers()
            moved = positions + np.searchsorted(at, positions, side="right")
            placed = at[other_positions] + other_positions
            all_positions = np.concatenate((moved, placed))
            order = np.argsort(all_positions, kind="stable")
            self._set_sparse(all_positions[order], np.concatenate((codes, other_codes.astype(self.dtype)))[order])
        self.events += other.events
        if self.dense is None and not sparse_is_smaller(self.codes.size, self.events, self.dtype):
            self._set_dense(self.as_dense())

    def column(self, values: Sequence[str]) -> PropertyColumn:
        if self.dense is not None:
            return PropertyColumn(tuple(values), self.dense.publish())
        return PropertyColumn(tuple(values), self.codes.publish(), self.positions.publish())


def _widen(buffer: _Buffer, dtype: np.dtype) -> None:
    if dtype.itemsize > buffer.data.dtype.itemsize:
        buffer.astype(dtype)


class _Columns:
    """Growing columns of events: user and event codes, timestamps, and the properties."""

    def __init__(self, properties: Sequence[str]) -> None:
        self.users = _Buffer(np.int32)
        self.events = _Buffer(np.int8)  # widened as event names come (see EventLog.event_ids)
        self.timestamps = _Buffer(np.int64)
        self.properties = {name: _PropertyBuffer() for name in properties}

    def __len__(self) -> int:
        return self.timestamps.size

    def _buffers(self) -> tuple[_Buffer, _Buffer, _Buffer]:
        return self.users, self.events, self.timestamps

    def reserve(self, capacity: int) -> None:
        for buffer in self._buffers():
            buffer.reserve(capacity)

    def extend(self, users: np.ndarray, events: np.ndarray, seconds: np.ndarray, n_event_names: int,
               properties: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> None:
        """Append a batch; ``n_event_names`` is the size of the event name dictionary and
        ``properties`` maps a name to (positions in the batch, codes, number of values in the
        property's dictionary)."""
        for name, (positions, codes, n_values) in properties.items():
            buffer = self.properties[name]
            buffer.widen(n_values)
            buffer.extend(len(seconds), positions, codes)
        self.users.extend(users)
        _widen(self.events, value_code_dtype(n_event_names))
        self.events.extend(events)
        self.timestamps.extend(seconds)

    def is_sorted(self) -> bool:
        stamps = self.timestamps.view()
        return len(stamps) < 2 or bool(np.all(stamps[1:] >= stamps[:-1]))

    def sort(self) -> None:
        """Stable sort by timestamp (ties keep file order): one index, one column at a time."""
        if self.is_sorted():
            return
        # Timsort (numpy's stable sort for int64) is linear on the long sorted runs that
        # append-only event files consist of.
        order = np.argsort(self.timestamps.view(), kind="stable")
        for buffer in self.properties.values():
            buffer.permute(order)
        for buffer in self._buffers():
            buffer.replace(buffer.view()[order])

    def merge(self, other: _Columns) -> None:
        """Add ``other``'s events (sorted, later in the file) to these (sorted): where both have
        the same second, ours come first, as a stable sort of the whole file would order them."""
        if not len(other):
            return
        _widen(self.events, other.events.data.dtype)
        ours = self.timestamps.view()
        if not len(ours) or other.timestamps.view()[0] >= ours[-1]:
            for mine, theirs in zip(self._buffers(), other._buffers()):
                mine.extend(theirs.view())
            for name, buffer in self.properties.items():
                incoming = other.properties[name]
                buffer.widen_to(incoming.dtype)
                positions, codes = incoming.carriers()
                buffer.extend(incoming.events, positions, codes)
            return
        at = np.searchsorted(ours, other.timestamps.view(), side="right")
        for name, buffer in self.properties.items():
            buffer.merge(at, other.properties[name])
        for mine, theirs in zip(self._buffers(), other._buffers()):
            mine.replace(np.insert(mine.view(), at, theirs.view()))

    def truncate(self, size: int) -> None:
        for buffer in self._buffers():
            buffer.truncate(size)
        for buffer in self.properties.values():
            buffer.truncate(size)

    def log(self, user_names: Sequence[str], event_names: Sequence[str],
            property_values: dict[str, dict[str, int]]) -> EventLog:
        for buffer in self.properties.values():
            buffer.settle()
        properties = {name: buffer.column(list(property_values[name]))
                      for name, buffer in self.properties.items()}
        return EventLog.trusted(self.users.publish(), self.events.publish(), self.timestamps.publish(),
                                tuple(user_names), tuple(event_names), properties)


# --- the state of a followed file -----------------------------------------------------------

@dataclass
class _State:
    """Everything a read leaves for the next one: the columns and dictionaries of the complete
    lines read so far, the counts, and where reading goes on."""

    properties: tuple[str, ...]
    is_csv: bool
    compressed: bool
    fingerprint: FileFingerprint = field(default_factory=lambda: FileFingerprint(0, 0))
    columns: _Columns = field(init=False)
    # Names and values are coded in order of first appearance on an accepted line.
    user_codes: _Codes = field(default_factory=lambda: _Codes())
    event_codes: _Codes = field(default_factory=lambda: _Codes())
    value_codes: dict[str, dict[str, int]] = field(init=False)
    lines: int = 0  # physical lines read (for line numbers)
    accepted: int = 0
    malformed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # the earliest few, by line
    offset: int = 0  # bytes read: the end of the last complete line
    csv_layout: _CsvLayout | None = None
    head: bytes = b""  # the first bytes of the file, and the last ones before ``offset``
    guard: bytes = b""
    appendable: bool = False

    def __post_init__(self) -> None:
        self.columns = _Columns(self.properties)
        self.value_codes = {name: {} for name in self.properties}
        self._value_lookups: dict[str, _ValueCodes] = {}

    def value_lookup(self, name: str) -> _ValueCodes:
        """The encoder of the property's value texts (see :class:`_ValueCodes`)."""
        lookup = self._value_lookups.get(name)
        if lookup is None:
            lookup = self._value_lookups[name] = _ValueCodes(self.value_codes[name])
        return lookup

    def forget_lookups(self) -> None:
        self._value_lookups.clear()

    def reject(self, line_number: int, reason: str, value: object) -> None:
        """Count a skipped line; keep the reasons of the earliest few (sorted by line)."""
        self.malformed += 1
        # Within a batch, timestamp rejections come after the others: order is kept by insertion.
        if len(self.errors) >= MAX_REPORTED_ERRORS and line_number > self.errors[-1][0]:
            return
        detail = "" if value is None else f": {_excerpt(value)}"
        bisect.insort(self.errors, (line_number, f"line {line_number}: {reason}{detail}"))
        del self.errors[MAX_REPORTED_ERRORS:]

    def result(self, bytes_read: int) -> _Loaded:
        log = self.columns.log(self.user_codes, self.event_codes, self.value_codes)
        return _Loaded(log, self.malformed, self.accepted + self.malformed,
                       [message for _, message in self.errors], bytes_read)


class _Loaded(NamedTuple):
    log: EventLog
    malformed_lines: int
    total_lines: int
    first_errors: list[str]
    bytes_read: int


class _Savepoint(NamedTuple):
    """What undoes the parse of a provisional last line (one without its newline yet)."""

    events: int
    users: int
    event_names: int
    values: dict[str, int]
    lines: int
    accepted: int
    malformed: int
    errors: list[tuple[int, str]]


def _savepoint(state: _State) -> _Savepoint:
    return _Savepoint(len(state.columns), len(state.user_codes), len(state.event_codes),
                      {name: len(codes) for name, codes in state.value_codes.items()},
                      state.lines, state.accepted, state.malformed, list(state.errors))


def _roll_back(state: _State, saved: _Savepoint) -> None:
    state.columns.truncate(saved.events)
    dictionaries = [(state.user_codes, saved.users), (state.event_codes, saved.event_names)]
    dictionaries += [(state.value_codes[name], size) for name, size in saved.values.items()]
    for codes, size in dictionaries:
        while len(codes) > size:
            codes.popitem()  # a dict pops its most recently inserted key first
    state.forget_lookups()
    state.lines, state.accepted, state.malformed = saved.lines, saved.accepted, saved.malformed
    state.errors = saved.errors


# --- reading --------------------------------------------------------------------------------

def _compact(state: _State) -> None:
    """After a full read, before the log is made: the names were created among a chunk's
    short-lived objects, and each keeps the memory page it shares with them from being freed;
    copies made together (and the originals dropped) let those pages go."""
    state.forget_lookups()
    state.user_codes = _Codes.renewed(state.user_codes)
    state.event_codes = _Codes.renewed(state.event_codes)
    for name, codes in state.value_codes.items():
        state.value_codes[name] = _Codes.renewed(codes)


def _release_free_memory() -> None:
    """Ask glibc to return the free parts of its heap (``malloc_trim``), where a full read's
    temporary arrays were: without it the process keeps about 4 bytes per event it does not
    use (bench/events_file.py)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_malloc_trim = _glibc_malloc_trim()


class _Tail(NamedTuple):
    """The end of what is written so far that is not a complete line (or CSV record) yet."""

    size: int  # bytes
    parse: Callable[[_Parser], None] | None  # parses it as the last line; None: nothing to parse


def _read(path: str, state: _State, fingerprint: FileFingerprint) -> _Loaded:
    """Read the file from ``state.offset`` on into ``state``; return the events now, including
    an unterminated last line, which is undone in ``state`` afterwards (it is read again, whole,
    next time)."""
    start = state.offset
    region = _Columns(state.properties)
    parser = _Parser(state, region)
    try:
        with (gzip.open if state.compressed else open)(path, "rb") as stream:
            if start:
                stream.seek(start)
            batches = _Batches(stream, at_start=start == 0,
                               size_hint=0 if state.compressed else fingerprint.size - start)
            committed, tail = (_read_csv if state.is_csv else _read_json_lines)(batches, parser, state)
            state.offset = start + committed
            if not state.compressed:
                stream.seek(0)
                state.head = stream.read(min(_GUARD_BYTES, state.offset))
                guard_start = max(0, state.offset - _GUARD_BYTES)
                stream.seek(guard_start)
                state.guard = stream.read(state.offset - guard_start)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise EventsFileError(f"{path}: corrupt or truncated gzip stream") from error
    region.sort()
    if len(state.columns):
        state.columns.merge(region)
    else:
        state.columns = region  # a first read: the region's columns are the columns, no copy
    del region, parser
    if start == 0:
        _compact(state)
    state.fingerprint = fingerprint
    state.appendable = not state.compressed and (not state.is_csv or state.csv_layout is not None)
    bytes_read = committed + tail.size
    if tail.parse is None:
        loaded = state.result(bytes_read)
        if start == 0:
            _release_free_memory()
        return loaded
    saved = _savepoint(state)
    provisional = _Columns(state.properties)
    tail.parse(_Parser(state, provisional))
    provisional.sort()
    in_order = not len(provisional) or not saved.events or (
        provisional.timestamps.view()[0] >= state.columns.timestamps.view()[-1])
    state.columns.merge(provisional)
    loaded = state.result(bytes_read)
    if in_order:
        _roll_back(state, saved)
    else:  # merged into the middle of the columns, where it cannot be undone cheaply
        state.appendable = False  # so the next change is read in full
    if start == 0:
        _release_free_memory()
    return loaded


class _Batches:
    """A binary stream cut into chunks of complete lines (each ending in ``\\n``), about
    ``_CHUNK_BYTES`` each; what follows the last newline is left in :attr:`rest`."""

    def __init__(self, stream: IO[bytes], *, at_start: bool, size_hint: int) -> None:
        self.stream = stream
        self.size_hint = size_hint  # bytes expected (0: unknown)
        self.skipped = 0  # a byte order mark at the start of the file
        self.consumed = 0  # bytes handed out in chunks, the skipped mark included
        self.rest = b""
        if at_start:
            head = stream.read(len(_BYTE_ORDER_MARK))
            if head == _BYTE_ORDER_MARK:
                self.skipped = self.consumed = len(head)
            else:
                self.rest = head

    def __iter__(self) -> Iterator[bytes]:
        parts = [self.rest] if self.rest else []
        while True:
            chunk = self.stream.read(_CHUNK_BYTES)
            if chunk:
                parts.append(chunk)
                if b"\n" not in chunk:  # a line longer than a chunk: gather its parts
                    continue
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            cut = data.rfind(b"\n") + 1
            if cut:
                self.consumed += cut
                yield data if cut == len(data) else data[:cut]
            parts = [data[cut:]] if cut < len(data) else []
            if not chunk:
                break
        self.rest = parts[0] if parts else b""


def _read_json_lines(batches: _Batches, parser: _Parser, state: _State) -> tuple[int, _Tail]:
    reserved = False
    for chunk in batches:
        lines = chunk.split(b"\n")
        lines.pop()  # the empty string after the final newline
        parser.json_lines(lines, state.lines + 1)
        state.lines += len(lines)
        if not reserved and batches.size_hint > len(chunk):  # size the columns from the first chunk
            parser.columns.reserve(len(lines) * batches.size_hint // len(chunk) * 21 // 20)
        reserved = True
    rest = batches.rest
    if not rest.strip(b" \t\r\n"):
        return batches.consumed, _Tail(len(rest), None)
    return batches.consumed, _Tail(len(rest), partial(_Parser.json_lines, lines=[rest], first_number=state.lines + 1))


@dataclass(frozen=True)
class _CsvLayout:
    """Where the fields are in a CSV file's rows."""

    width: int
    user_at: int
    event_at: int
    time_at: int
    property_at: dict[str, int]


def _csv_layout(header: list[str], properties: Sequence[str]) -> _CsvLayout:
    stripped = [name.strip() for name in header]
    columns = [name.lower() for name in stripped]
    missing = [name for name in CSV_REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise EventsFileError(f"CSV header lacks column(s) {', '.join(missing)}: {_excerpt(header)}")
    required = [columns.index(name) for name in CSV_REQUIRED_COLUMNS]
    property_at = {}
    for name in properties:  # the column of that exact name, else one differing only in case
        for names, wanted in ((stripped, name), (columns, name.lower())):
            found = [i for i, column in enumerate(names) if column == wanted and i not in required]
            if found:
                property_at[name] = found[0]
                break
    return _CsvLayout(len(columns), *required, property_at)


class _CsvLines:
    """The lines of a region for :func:`csv.reader`, split as it splits them (``\r``, ``\n``,
    ``\r\n``), counting their bytes and noticing when the reader asks beyond the last one."""

    def __init__(self, batches: _Batches) -> None:
        self._batches = batches
        self._chunks = iter(batches)
        self._lines: list[bytes] = []
        self._next = 0
        self._at_rest = False
        self.exhausted = False
        self.last = b""
        self.final = False  # whether ``last`` is the last line written so far
        self.consumed = 0  # bytes of the lines handed out

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        while self._next == len(self._lines):
            chunk = next(self._chunks, None)
            if chunk is None:
                if self._at_rest:
                    self.exhausted = True
                    raise StopIteration
                self._at_rest, chunk = True, self._batches.rest
            self._lines, self._next = chunk.splitlines(keepends=True), 0
        line = self.last = self._lines[self._next]
        self._next += 1
        self.final = self._at_rest and self._next == len(self._lines)
        self.consumed += len(line)
        return line.decode("utf-8", "surrogateescape")

    def complete(self) -> bool:
        """Whether the record the reader just returned ended with a line end (rather than with
        the end of what is written so far; a final ``\r`` may yet be followed by ``\n``)."""
        return not self.exhausted and (self.last.endswith(b"\n") or (self.last.endswith(b"\r") and not self.final))


def _read_csv(batches: _Batches, parser: _Parser, state: _State) -> tuple[int, _Tail]:
    lines = _CsvLines(batches)
    reader = csv.reader(lines)
    base = state.lines
    committed = 0  # bytes of the lines of complete records
    if state.csv_layout is None:
        header = next(reader, None)
        if header is None or not lines.complete():  # no header yet, or not all of it
            return batches.skipped, _Tail(lines.consumed, None)
        state.csv_layout = _csv_layout(header, state.properties)
        committed, state.lines = lines.consumed, base + reader.line_num
    rows: list[list[str]] = []
    numbers: list[int] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            state.reject(base + reader.line_num, f"CSV syntax error ({error})", None)
            committed, state.lines = lines.consumed, base + reader.line_num
            continue
        if not lines.complete():  # the last record, cut short by the end of what is written
            parser.csv_rows(rows, numbers)
            return batches.skipped + committed, _Tail(
                lines.consumed - committed, partial(_Parser.csv_rows, rows=[row], numbers=[base + reader.line_num]))
        committed, state.lines = lines.consumed, base + reader.line_num
        rows.append(row)
        numbers.append(state.lines)
        if len(rows) >= _CSV_BATCH_ROWS:
            parser.csv_rows(rows, numbers)
            rows, numbers = [], []
    parser.csv_rows(rows, numbers)
    return batches.skipped + committed, _Tail(lines.consumed - committed, None)


# --- lines to columns -----------------------------------------------------------------------

def _only(values: list[object], *kinds: type) -> bool:
    """Whether every value is of one of ``kinds`` (exactly: ``bool`` is not ``int``)."""
    return set(map(type, values)) <= set(kinds)


_scan_once = json.JSONDecoder().scan_once


def _stdlib_loads(line: bytes) -> object:
    """The standard library's reading of a line (the loader's definition of valid JSON, for the
    lines orjson refuses), or ``_NOT_JSON``."""
    text = line.decode("utf-8", "surrogateescape")
    try:
        record, end = _scan_once(text, 0)
        if end == len(text) or not text[end:].strip(_JSON_WHITESPACE):
            return record
    except (ValueError, StopIteration):
        pass
    try:  # e.g. leading whitespace, which the bare scanner does not skip
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


_loads = orjson.loads  # bench/events_file.py swaps in the standard library to compare


def _warm_key_cache(keys: Sequence[str]) -> None:
    """Have orjson create (and cache) its strings for these keys now: created during a read, each
    would pin the chunk of small-object memory it landed in long after the read."""
    orjson.loads(orjson.dumps(dict.fromkeys(keys, 0)))


_warm_key_cache(("user_id", "event", "timestamp", *PROPERTY_FIELDS))


class _Codes(dict):
    """Name -> code; a name looked up for the first time gets the next code. Looking a list of
    names up with ``itemgetter`` thus encodes it in one C-level pass, new names numbered in
    order of first appearance (only names of accepted lines are looked up)."""

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self)
        return code

    @classmethod
    def renewed(cls, codes: dict[str, int]) -> _Codes:
        """The same codes (0, 1, ... in insertion order) with the names and numbers made anew,
        side by side in memory, after ``codes`` (emptied) has let go of the old ones (see
        :func:`_compact`)."""
        names = list(codes)
        text = "".join(names)  # one block, outside the small-object heap
        ends = np.cumsum(np.fromiter(map(len, names), dtype=np.int64, count=len(names))).tolist()
        codes.clear()
        names.clear()
        return cls(zip(map(text.__getitem__, map(slice, [0, *ends[:-1]], ends)), range(len(ends))))


class _ValueCodes(dict):
    """A property's value text -> code, or ``ABSENT`` for None, the empty text and text that is
    not valid UTF-8; new valid texts get the next code in ``codes`` (the property's dictionary,
    which holds the valid texts only)."""

    def __init__(self, codes: dict[str, int]) -> None:
        super().__init__(codes)
        self[None] = ABSENT
        self.codes = codes

    def __missing__(self, text: str) -> int:
        if text and (text.isascii() or _is_unicode(text)):
            code = self[text] = self.codes[text] = len(self.codes)
        else:
            code = self[text] = ABSENT
        return code


def _encode(codes: dict[Any, int], keys: list[Any]) -> np.ndarray:
    """``codes[key]`` for every key, as int32."""
    if len(keys) < 2:
        return np.array([codes[key] for key in keys], dtype=np.int32)
    return np.fromiter(itemgetter(*keys)(codes), dtype=np.int32, count=len(keys))


def _all_names_valid(names: list[str]) -> bool:
    """Whether ``names`` are all non-empty and valid UTF-8 (C-level passes); TypeError when
    one is not a string."""
    text = "".join(names)  # raises TypeError for anything but strings
    return "" not in names and (text.isascii() or _is_unicode(text))


def _maybe_big_integer(value: object) -> bool:
    """Whether ``value`` may be orjson's float for an integer outside 64 bits."""
    return type(value) is float and abs(value) >= 2.0**63


def _property_bag(record: object) -> object:
    if type(record) is not dict:
        return None
    bag = record.get(PROPERTY_FIELDS[0])
    return record.get(PROPERTY_FIELDS[1]) if bag is None else bag


class _Parser:
    """Checks lines and appends the accepted ones, encoded, to ``columns``; rejected lines are
    counted in ``state``, whose dictionaries encode the names."""

    def __init__(self, state: _State, columns: _Columns) -> None:
        self.state = state
        self.columns = columns
        self.properties = state.properties

    # JSON Lines: the fast way checks a whole chunk with C-level operations and leaves it to the
    # careful way, line by line, as soon as anything is unusual.

    def json_lines(self, lines: list[bytes], first_number: int) -> None:
        try:
            records = list(map(_loads, lines))
        except ValueError:  # orjson.JSONDecodeError is one; so is a blank line
            return self._json_lines_one_by_one(lines, first_number)
        if not _only(records, dict):
            return self._json_lines_one_by_one(lines, first_number, records)
        users = list(map(dict.get, records, repeat("user_id")))
        events = list(map(dict.get, records, repeat("event")))
        try:
            valid = _all_names_valid(events) and _all_names_valid(users)
        except TypeError:  # not all strings: maybe numeric user ids, else something is off
            valid = _only(events, str) and _only(users, int)
            if valid:
                users = list(map(str, users))
                valid = _all_names_valid(users)
        if not valid:
            return self._json_lines_one_by_one(lines, first_number, records)
        stamps = list(map(dict.get, records, repeat("timestamp")))
        self._accept(range(first_number, first_number + len(lines)), users, events, stamps,
                     self._json_values(records, lines))

    def _json_lines_one_by_one(self, lines: list[bytes], first_number: int,
                               records: list[object] | None = None) -> None:
        reject = self.state.reject
        numbers: list[int] = []
        accepted: list[dict] = []
        accepted_lines: list[bytes] = []
        users: list[str] = []
        events: list[str] = []
        for index, line in enumerate(lines):
            number = first_number + index
            if records is not None:
                record = records[index]
            else:
                try:
                    record = _loads(line)
                except ValueError:
                    record = _stdlib_loads(line)
                    if record is _NOT_JSON:
                        if line.strip(b" \t\r\n"):
                            reject(number, "not valid JSON", line)
                        continue
            if type(record) is not dict:
                reject(number, "not a JSON object", line)
                continue
            user = record.get("user_id")
            if _maybe_big_integer(user):
                record = _stdlib_loads(line)
                user = record.get("user_id")
            if type(user) is int:
                user = str(user)
            event = record.get("event")
            if type(user) is not str or not user:
                reject(number, "user_id missing or not a non-empty string", user)
            elif type(event) is not str or not event:
                reject(number, "event missing or not a non-empty string", event)
            elif not (user.isascii() and event.isascii()) and not _is_unicode(user + event):
                reject(number, "user_id or event is not valid UTF-8", None)
            else:
                numbers.append(number)
                accepted.append(record)
                accepted_lines.append(line)
                users.append(user)
                events.append(event)
        stamps = [record.get("timestamp") for record in accepted]
        self._accept(numbers, users, events, stamps, self._json_values(accepted, accepted_lines))

    def _json_values(self, records: list[dict], lines: list[bytes]) -> dict[str, list[str | None]]:
        """Each asked-for property's value text per record (None: absent); ``lines`` are the
        records' lines, read again by the standard library where orjson turned an integer
        beyond 64 bits into a float (whose text would differ)."""
        if not self.properties:
            return {}
        bags = list(map(dict.get, records, repeat(PROPERTY_FIELDS[0])))
        if None in bags:
            bags = [bag if bag is not None else record.get(PROPERTY_FIELDS[1])
                    for bag, record in zip(bags, records)]
        every_bag_a_dict = _only(bags, dict)
        values = {}
        for name in self.properties:
            if every_bag_a_dict:
                raw = list(map(dict.get, bags, repeat(name)))
            else:
                raw = [bag.get(name) if type(bag) is dict else None for bag in bags]
            if not _only(raw, str, type(None)):
                for index in [i for i, value in enumerate(raw) if _maybe_big_integer(value)]:
                    bag = _property_bag(_stdlib_loads(lines[index]))
                    raw[index] = bag.get(name) if type(bag) is dict else None
                raw = list(map(_property_text, raw))
            values[name] = raw
        return values

    # CSV: the csv module splits the records; each is checked here.

    def csv_rows(self, rows: list[list[str]], numbers: list[int]) -> None:
        layout = self.state.csv_layout
        assert layout is not None
        reject = self.state.reject
        width, user_at, event_at, time_at = layout.width, layout.user_at, layout.event_at, layout.time_at
        accepted_numbers: list[int] = []
        accepted: list[list[str]] = []
        for row, number in zip(rows, numbers):
            if not row:
                continue
            if len(row) != width:
                reject(number, f"expected {width} fields, found {len(row)}", row)
                continue
            user, event = row[user_at], row[event_at]
            if not user:
                reject(number, "user_id is empty", None)
            elif not event:
                reject(number, "event is empty", None)
            elif not (user.isascii() and event.isascii()) and not _is_unicode(user + event):
                reject(number, "user_id or event is not valid UTF-8", None)
            else:
                accepted_numbers.append(number)
                accepted.append(row)
        values = {name: [row[at] or None for row in accepted] for name, at in layout.property_at.items()}
        self._accept(accepted_numbers, [row[user_at] for row in accepted], [row[event_at] for row in accepted],
                     [row[time_at] for row in accepted], values)

    # Both formats: timestamps checked a chunk at a time, then names and values encoded.

    def _accept(self, numbers: Sequence[int], users: list[str], events: list[str], stamps: list[object],
                values: dict[str, list[str | None]]) -> None:
        """Append the lines whose timestamp is valid (their names are)."""
        state = self.state
        seconds, valid = _parse_timestamps(stamps)
        if not valid.all():
            for index in np.flatnonzero(~valid).tolist():
                state.reject(numbers[index], _BAD_TIMESTAMP, stamps[index])
            keep = valid.tolist()
            users, events = list(compress(users, keep)), list(compress(events, keep))
            values = {name: list(compress(texts, keep)) for name, texts in values.items()}
            seconds = seconds[valid]
        if not users:
            return
        properties = {}
        for name in self.properties:
            texts = values.get(name)
            if texts is None:  # a CSV without that column
                nothing = np.empty(0, dtype=np.int64)
                properties[name] = (nothing, nothing, len(state.value_codes[name]))
                continue
            codes = _encode(state.value_lookup(name), texts)
            positions = np.flatnonzero(codes != ABSENT)
            properties[name] = (positions, codes[positions], len(state.value_codes[name]))
        self.columns.extend(_encode(state.user_codes, users), _encode(state.event_codes, events), seconds,
                            len(state.event_codes), properties)
        state.accepted += len(users)


# --- timestamps -----------------------------------------------------------------------------

def _parse_timestamps(raw: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (floored) and a validity mask for raw timestamp values.

    Strings of the common ISO shape are parsed with numpy in one go; everything else (numbers,
    epoch strings, unusual ISO forms, garbage) goes through :func:`_parse_one_timestamp`, which
    is the definition of what is valid: the vectorised path only accepts strings it agrees on.
    """
    kinds = set(map(type, raw))
    if kinds <= {str}:
        seconds, valid = _parse_common_iso(raw)
    elif kinds <= {int} and _fits_int64(raw):  # epoch seconds as JSON integers
        seconds = np.array(raw, dtype=np.int64)
        valid = (seconds >= _MIN_EPOCH_SECONDS) & (seconds <= _MAX_EPOCH_SECONDS)
    else:
        seconds = np.zeros(len(raw), dtype=np.int64)
        valid = np.zeros(len(raw), dtype=bool)
        is_text = np.array([type(value) is str for value in raw], dtype=bool)
        texts = [value for value in raw if type(value) is str]
        seconds[is_text], valid[is_text] = _parse_common_iso(texts)
    for index in np.flatnonzero(~valid).tolist():
        value = _parse_one_timestamp(raw[index])
        if value is not None:
            seconds[index] = value
            valid[index] = True
    return seconds, valid


def _fits_int64(values: Sequence[int]) -> bool:
    limit = np.iinfo(np.int64).max
    return -limit <= min(values) and max(values) <= limit


def _parse_one_timestamp(value: object) -> int | None:
    """Floored epoch seconds of one raw value, or None when it is not a valid timestamp."""
    if type(value) is int:
        seconds = value
    elif type(value) is float:
        if not math.isfinite(value):
            return None
        seconds = math.floor(value)
    elif type(value) is str:
        text = value.strip()
        if _EPOCH_TEXT.fullmatch(text):
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return _parse_one_timestamp(number)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.utcoffset() is None:
            return None
        try:
            seconds = (moment - _EPOCH) // timedelta(seconds=1)
        except OverflowError:
            return None
    else:
        return None
    return seconds if _MIN_EPOCH_SECONDS <= seconds <= _MAX_EPOCH_SECONDS else None


# The common ISO shape, checked by character class: a digit is "0"; the date/time separator may
# be "T" or " "; an offset sign may be "+" or "-". The head is fixed; the tail after the seconds
# has one valid template per (offset kind, tail length).
_ISO_HEAD = "0000-00-00T00:00:00"
_ISO_MAX_TAIL = 1 + 9 + 6  # ".", up to nanoseconds, "+HH:MM"
_ISO_MAX_CHARS = len(_ISO_HEAD) + _ISO_MAX_TAIL
_NO_MATCH = 0xFF  # a class no character has


def _character_classes(**aliases: str) -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    table[ord("0"): ord("9") + 1] = ord("0")
    for alias, canonical in aliases.values():
        table[ord(alias)] = ord(canonical)
    return table


def _tail_templates() -> np.ndarray:
    """``[kind, tail_length]`` -> template; kind 0 ends in "Z", kind 1 in "+HH:MM"."""
    templates = np.full((2, _ISO_MAX_TAIL + 1, _ISO_MAX_TAIL), _NO_MATCH, dtype=np.uint8)
    for kind, offset in enumerate(("Z", "+00:00")):
        for fraction_digits in range(10):
            fraction = "." + "0" * fraction_digits if fraction_digits else ""
            tail = (fraction + offset).encode().ljust(_ISO_MAX_TAIL, b"\0")
            templates[kind, len(fraction + offset)] = np.frombuffer(tail, dtype=np.uint8)
    return templates


_HEAD_CLASSES = _character_classes(separator=(" ", "T"))
_TAIL_CLASSES = _character_classes(sign=("-", "+"))
_HEAD_TEMPLATE = np.frombuffer(_ISO_HEAD.encode(), dtype=np.uint8)
_TAIL_TEMPLATES = _tail_templates()
# (first character, width) of year, month, day, hour, minute and second in the head.
_HEAD_FIELDS = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_DAYS_0001_TO_1970 = 719_162


def _decimal(chars: np.ndarray, first: int, width: int) -> np.ndarray:
    """The number written in columns ``first .. first + width - 1`` of each row (digits only)."""
    value = np.zeros(len(chars), dtype=np.int64)
    for column in range(first, first + width):
        value = value * 10 + chars[:, column] - ord("0")
    return value


def _rows_equal(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise equality of two uint8 matrices (``right`` may be one row), as byte strings."""
    width = left.shape[1]
    left = np.ascontiguousarray(left).view(f"S{width}")[:, 0]
    right = np.ascontiguousarray(right).view(f"S{width}")[..., 0]
    return left == right


def _parse_common_iso(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised parse of ``YYYY-MM-DD(T| )HH:MM:SS[.d{1,9}](Z|+HH:MM|-HH:MM)``.

    Returns floored epoch seconds and a mask of the strings that have exactly this shape and
    hold a valid date, time and offset; other strings are left to the general parser.
    """
    count, head_width = len(texts), len(_ISO_HEAD)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    joined = "".join(texts)
    width = int(lengths[0]) if count else 0
    if 0 < width <= _ISO_MAX_CHARS and joined.isascii() and bool(np.all(lengths == width)):
        # The usual case, every string of one shape: one C-level join, no per-string packing.
        chars = np.zeros((count, _ISO_MAX_CHARS), dtype=np.uint8)
        chars[:, :width] = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(count, width)
    else:
        try:  # longer strings are truncated here and excluded by their length below
            packed = np.array(texts, dtype=f"S{_ISO_MAX_CHARS}")
        except UnicodeEncodeError:
            packed = np.array([t if t.isascii() else "" for t in texts], dtype=f"S{_ISO_MAX_CHARS}")
        chars = packed.view(np.uint8).reshape(count, _ISO_MAX_CHARS)
    head, tail = chars[:, :head_width], chars[:, head_width:]
    rows = np.arange(count)

    tail_length = np.clip(lengths - head_width, 0, _ISO_MAX_TAIL)
    last = tail[rows, np.maximum(tail_length - 1, 0)]
    kind = (last != ord("Z")).astype(np.intp)
    ok = (lengths > head_width) & (lengths <= _ISO_MAX_CHARS)
    ok &= _rows_equal(np.take(_HEAD_CLASSES, head), _HEAD_TEMPLATE)
    ok &= _rows_equal(np.take(_TAIL_CLASSES, tail), _TAIL_TEMPLATES[kind, tail_length])

    year, month, day, hour, minute, second = (_decimal(head, *field) for field in _HEAD_FIELDS)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= (year >= 1) & (month >= 1) & (month <= 12)
    month = np.where(ok, month, 1)  # a valid index for the tables below
    ok &= (day >= 1) & (day <= _DAYS_IN_MONTH[month] + ((month == 2) & leap))
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)

    # "+HH:MM" occupies the last six tail characters; for "Z" these reads are masked out.
    def digit_at(from_end: int) -> np.ndarray:
        return tail[rows, np.maximum(tail_length - from_end, 0)].astype(np.int64) - ord("0")

    offset_hours = digit_at(5) * 10 + digit_at(4)
    offset_minutes = digit_at(2) * 10 + digit_at(1)
    has_offset = kind == 1
    ok &= ~has_offset | ((offset_hours <= 23) & (offset_minutes <= 59))
    offset = np.where(has_offset, offset_hours * 3_600 + offset_minutes * 60, 0)
    offset = np.where(tail[rows, np.maximum(tail_length - 6, 0)] == ord("-"), -offset, offset)

    previous_year = year - 1
    days = (
        previous_year * 365 + previous_year // 4 - previous_year // 100 + previous_year // 400
        + _DAYS_BEFORE_MONTH[month] + ((month > 2) & leap) + day - 1 - _DAYS_0001_TO_1970
    )
    seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset
    ok &= (seconds >= _MIN_EPOCH_SECONDS) & (seconds <= _MAX_EPOCH_SECONDS)
    return seconds, ok
