"""Load identified product events from a JSON Lines or CSV file, optionally gzip-compressed.

Formats (docs/upstreams.md#identified-events), chosen by file name: ``.jsonl``, ``.json``, ``.ndjson`` are JSON
Lines (one object per line: ``{"user_id": ..., "event": ..., "timestamp": ..., "props": ...}``);
``.csv`` is CSV with a header naming ``user_id``, ``event`` and ``timestamp`` (in any order;
other columns are ignored). A trailing ``.gz`` means gzip, read transparently.

Field rules:

- ``user_id``: non-empty string; a JSON integer is accepted and read as its decimal string, so
  ``123`` in JSON and ``123`` in CSV name the same user. ``event``: non-empty string.
- ``timestamp``: ISO 8601 with a UTC offset (``Z`` allowed; a naive time is rejected because its
  zone is unknown), or epoch seconds as a number or a decimal string. Stored at one-second
  resolution: fractional seconds are floored. Values outside years 1..9999 are rejected.

A line that breaks a rule is skipped and counted in ``malformed_lines``; it never fails the load.
Blank lines are ignored and not counted. Problems with the file itself (unknown extension, a CSV
header without the required columns, a corrupt gzip stream) raise :class:`EventsFileError`;
a missing or unreadable file raises the usual ``OSError``.

Speed: lines are parsed in chunks; names are dictionary-encoded as they are read, and the
timestamps of a chunk are parsed together with numpy for the common
``YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)`` shape (``datetime.fromisoformat`` decides only the
unusual rest), so the per-line Python work is little more than the JSON parse itself.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import math
import os
import re
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import numpy as np

from exporter.events.log import EventLog

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_SUFFIXES = (".csv",)
CSV_REQUIRED_COLUMNS = ("user_id", "event", "timestamp")
MAX_REPORTED_ERRORS = 5

_CHUNK_LINES = 65_536
_EXCERPT_CHARS = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MIN_EPOCH_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_BAD_TIMESTAMP = "timestamp is neither ISO 8601 with a UTC offset nor epoch seconds"
_JSON_WHITESPACE = " \t\r\n"
_EPOCH_TEXT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


class EventsFileError(ValueError):
    """The events file as a whole cannot be read (format, header or compression)."""


@dataclass(frozen=True)
class LoadResult:
    """A loaded log plus what was wrong with the lines that were skipped."""

    log: EventLog
    malformed_lines: int
    total_lines: int  # non-blank data lines (a CSV header is not counted)
    first_errors: list[str]  # up to MAX_REPORTED_ERRORS, "line N: reason", in file order


class FileFingerprint(NamedTuple):
    """What changes when a file is rewritten or appended to; compare to decide on a re-read."""

    mtime_ns: int
    size: int


def file_fingerprint(path: str | os.PathLike[str]) -> FileFingerprint:
    """Modification time (ns) and size of ``path``, for cheap change detection."""
    status = os.stat(path)
    return FileFingerprint(status.st_mtime_ns, status.st_size)


def load_events_file(path: str | os.PathLike[str]) -> LoadResult:
    """Read every event in ``path`` into an :class:`EventLog` (sorted by timestamp)."""
    is_csv, compressed = _detect_format(os.fspath(path))
    builder = _LogBuilder()
    try:
        with _open_text(path, compressed) as stream:
            read = _read_csv if is_csv else _read_json_lines
            read(stream, builder)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise EventsFileError(f"{os.fspath(path)}: corrupt or truncated gzip stream") from error
    return builder.finish()


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


def _open_text(path: str | os.PathLike[str], compressed: bool) -> io.TextIOBase:
    # surrogateescape keeps a line with invalid UTF-8 readable, so that only a line whose names
    # are affected is rejected (see _is_unicode) instead of the decoder failing the whole file.
    binary = gzip.open(path, "rb") if compressed else open(path, "rb")
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _is_unicode(name: str) -> bool:
    """False for text holding lone surrogates (invalid UTF-8 bytes, or JSON "\\udXXX" escapes),
    which could not be written out again as UTF-8 JSON or Prometheus text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- lines to fields ------------------------------------------------------------------------
#
# Readers check user_id and event and hand each line to the builder, accepted (timestamps are
# checked later, a chunk at a time) or rejected.

def _read_json_lines(stream: Iterable[str], builder: _LogBuilder) -> None:
    # The decoder's C scanner is called directly: json.loads wraps it in BOM and whitespace
    # handling that costs twice the parse itself on one-line objects. Lines the scanner does not
    # take as a whole (leading whitespace, trailing garbage) get json.loads' verdict.
    scan = json.JSONDecoder().scan_once
    line_numbers, users, events, timestamps = builder.pending
    user_code, user_codes = builder.user_codes.setdefault, builder.user_codes
    event_code, event_codes = builder.event_codes.setdefault, builder.event_codes
    for line_number, line in enumerate(stream, start=1):
        try:
            record, end = scan(line, 0)
            if end != len(line) and line[end:].strip(_JSON_WHITESPACE):
                raise ValueError("trailing characters")
        except (ValueError, StopIteration):
            try:
                record = json.loads(line)
            except ValueError:
                if line.strip(_JSON_WHITESPACE):
                    builder.reject(line_number, "not valid JSON", line)
                continue
        if type(record) is not dict:
            builder.reject(line_number, "not a JSON object", line)
            continue
        user = record.get("user_id")
        if type(user) is int:
            user = str(user)
        event = record.get("event")
        if type(user) is not str or not user:
            builder.reject(line_number, "user_id missing or not a non-empty string", user)
        elif type(event) is not str or not event:
            builder.reject(line_number, "event missing or not a non-empty string", event)
        elif not (user.isascii() and event.isascii()) and not _is_unicode(user + event):
            builder.reject(line_number, "user_id or event is not valid UTF-8", None)
        else:
            line_numbers.append(line_number)
            users.append(user_code(user, len(user_codes)))
            events.append(event_code(event, len(event_codes)))
            timestamps.append(record.get("timestamp"))
            if len(line_numbers) >= _CHUNK_LINES:
                builder.flush()


def _read_csv(stream: Iterable[str], builder: _LogBuilder) -> None:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    columns = [name.strip().lower() for name in header]
    missing = [name for name in CSV_REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise EventsFileError(
            f"CSV header lacks column(s) {', '.join(missing)}: {_excerpt(header)}"
        )
    user_at, event_at, time_at = (columns.index(name) for name in CSV_REQUIRED_COLUMNS)
    width = len(columns)
    line_numbers, users, events, timestamps = builder.pending
    user_code, user_codes = builder.user_codes.setdefault, builder.user_codes
    event_code, event_codes = builder.event_codes.setdefault, builder.event_codes
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            builder.reject(reader.line_num, f"CSV syntax error ({error})", None)
            continue
        line_number = reader.line_num
        if not row:
            continue
        if len(row) != width:
            builder.reject(line_number, f"expected {width} fields, found {len(row)}", row)
            continue
        user, event = row[user_at], row[event_at]
        if not user:
            builder.reject(line_number, "user_id is empty", None)
        elif not event:
            builder.reject(line_number, "event is empty", None)
        elif not (user.isascii() and event.isascii()) and not _is_unicode(user + event):
            builder.reject(line_number, "user_id or event is not valid UTF-8", None)
        else:
            line_numbers.append(line_number)
            users.append(user_code(user, len(user_codes)))
            events.append(event_code(event, len(event_codes)))
            timestamps.append(row[time_at])
            if len(line_numbers) >= _CHUNK_LINES:
                builder.flush()


# --- rows to columns ------------------------------------------------------------------------

class _LogBuilder:
    """Accumulates dictionary-encoded columns chunk by chunk, and the rejected-line report.

    Readers dictionary-encode names with ``user_codes`` / ``event_codes`` (name -> code, codes
    in order of first appearance; ``codes.setdefault(name, len(codes))``) while the string is
    fresh, append accepted lines straight to the four ``pending`` lists (line number, user code,
    event code, raw timestamp) and call :meth:`flush` when a chunk is full; flush empties the
    lists in place. Plain per-field lists keep per-line cost down (no method call, no per-line
    object for the garbage collector to track) and let a chunk's timestamps be parsed together.
    A name whose only lines are later rejected for their timestamp keeps an unused code, which
    :meth:`EventLog.build` drops.
    """

    def __init__(self) -> None:
        self.user_codes: dict[str, int] = {}
        self.event_codes: dict[str, int] = {}
        self._users = array("i")
        self._events = array("i")
        self._timestamps = array("q")
        self._accepted = 0
        self._malformed = 0
        self._errors: list[tuple[int, str]] = []
        self.pending: tuple[list[int], list[int], list[int], list[object]] = ([], [], [], [])

    def reject(self, line_number: int, reason: str, value: object) -> None:
        """Count a skipped line; keep the reasons of the earliest few (sorted by line)."""
        self._malformed += 1
        # Timestamp rejections arrive a chunk late, so order is restored by insertion.
        if len(self._errors) >= MAX_REPORTED_ERRORS and line_number > self._errors[-1][0]:
            return
        detail = "" if value is None else f": {_excerpt(value)}"
        bisect.insort(self._errors, (line_number, f"line {line_number}: {reason}{detail}"))
        del self._errors[MAX_REPORTED_ERRORS:]

    def flush(self) -> None:
        """Append the pending lines whose timestamp is valid."""
        line_numbers, users, events, raw_timestamps = self.pending
        seconds, valid = _parse_timestamps(raw_timestamps)
        users = np.array(users, dtype=np.int32)
        events = np.array(events, dtype=np.int32)
        if not valid.all():
            for index in np.flatnonzero(~valid).tolist():
                self.reject(line_numbers[index], _BAD_TIMESTAMP, raw_timestamps[index])
            users, events, seconds = users[valid], events[valid], seconds[valid]
        for field in self.pending:
            field.clear()
        self._users.frombytes(users.tobytes())
        self._events.frombytes(events.tobytes())
        self._timestamps.frombytes(seconds.tobytes())
        self._accepted += len(seconds)

    def finish(self) -> LoadResult:
        """Sort the columns into an :class:`EventLog` and report what was skipped."""
        self.flush()
        log = EventLog.build(
            np.frombuffer(self._users, dtype=np.int32),
            np.frombuffer(self._events, dtype=np.int32),
            np.frombuffer(self._timestamps, dtype=np.int64),
            list(self.user_codes),
            list(self.event_codes),
        )
        return LoadResult(
            log=log,
            malformed_lines=self._malformed,
            total_lines=self._accepted + self._malformed,
            first_errors=[message for _, message in self._errors],
        )


def _excerpt(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


# --- timestamps -----------------------------------------------------------------------------

def _parse_timestamps(raw: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds (floored) and a validity mask for raw timestamp values.

    Strings of the common ISO shape are parsed with numpy in one go; everything else (numbers,
    epoch strings, unusual ISO forms, garbage) goes through :func:`_parse_one_timestamp`, which
    is the definition of what is valid: the vectorised path only accepts strings it agrees on.
    """
    if set(map(type, raw)) <= {str}:
        seconds, valid = _parse_common_iso(raw)
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
