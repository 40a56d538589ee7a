"""The events file loader and the columnar EventLog.

Expected timestamps are computed independently with ``calendar.timegm`` on the UTC time tuple;
validity of odd timestamp strings is judged by ``datetime.fromisoformat`` (the documented rule).
"""

from __future__ import annotations

import calendar
import csv
import gzip
import io
import json
import math
import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.events import file_loader
from exporter.events.file_loader import (
    MAX_REPORTED_ERRORS,
    EventsFileError,
    file_fingerprint,
    load_events_file,
)
from exporter.events.log import EventLog


def write(path, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def events_of(result) -> list[tuple[str, str, int]]:
    log = result.log
    return [
        (log.user_names[u], log.event_names[e], t)
        for u, e, t in zip(log.user_ids.tolist(), log.event_ids.tolist(), log.timestamps.tolist())
    ]


def utc_seconds(moment: datetime) -> int:
    """Floored epoch seconds, independently of the loader: timegm on the UTC time tuple."""
    return calendar.timegm(moment.astimezone(timezone.utc).utctimetuple())


# --- timestamps -----------------------------------------------------------------------------

offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 12, 30)),
    offsets,
)


def iso_variants(moment: datetime, spec: str, separator: str, zulu: bool, extra_digits: str):
    text = moment.isoformat(sep=separator, timespec=spec)
    if extra_digits and spec == "microseconds":  # nanoseconds: more digits than datetime keeps
        text = text[:26] + extra_digits + text[26:]
    if zulu and moment.utcoffset() == timedelta(0):
        text = text[: -len("+00:00")] + "Z"
    return text


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            moments, st.sampled_from(["seconds", "milliseconds", "microseconds"]),
            st.sampled_from(["T", " "]), st.booleans(), st.sampled_from(["", "1", "999"]),
        ),
        min_size=1, max_size=30,
    ),
    st.sampled_from([".jsonl", ".csv", ".ndjson.gz", ".csv.gz"]),
)
def test_iso_timestamps_in_any_offset_are_read_exactly(tmp_path_factory, stamps, suffix):
    texts = [iso_variants(*stamp) for stamp in stamps]
    path = tmp_path_factory.mktemp("iso") / f"events{suffix}"
    if ".csv" in suffix:
        write(path, "user_id,event,timestamp\n" + "".join(f"u,e,{t}\n" for t in texts))
    else:
        write(path, jsonl(*({"user_id": "u", "event": "e", "timestamp": t} for t in texts)))
    result = load_events_file(path)
    assert result.malformed_lines == 0, result.first_errors
    assert sorted(result.log.timestamps.tolist()) == sorted(utc_seconds(s[0]) for s in stamps)


def fromisoformat_verdict(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.utcoffset() is None or not 1 <= moment.astimezone(timezone.utc).year <= 9999:
        return None
    return utc_seconds(moment)


@settings(max_examples=150, deadline=None)
@given(st.lists(
    st.builds(
        lambda text, position, replacement: text[:position] + replacement + text[position + 1:],
        st.sampled_from([
            "2026-11-20T10:15:30Z", "2026-11-20T10:15:30.123+05:30", "2024-02-29 23:59:59-08:00",
            "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-20T10:15:30.123456789Z",
        ]),
        st.integers(0, 35),
        st.sampled_from(["", "0", "1", "2", "3", "5", "9", "Z", "+", "-", ":", ".", "T", " ", "x"]),
    ),
    min_size=1, max_size=20,
))
def test_odd_timestamp_strings_are_judged_like_fromisoformat(tmp_path_factory, texts):
    path = tmp_path_factory.mktemp("odd") / "events.jsonl"
    write(path, jsonl(*({"user_id": f"u{i}", "event": "e", "timestamp": t}
                        for i, t in enumerate(texts))))
    loaded = {user: ts for user, _, ts in events_of(load_events_file(path))}
    for i, text in enumerate(texts):
        assert loaded.get(f"u{i}") == fromisoformat_verdict(text), text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000),
        (1_700_000_000.9, 1_700_000_000),
        (-0.5, -1),
        ("1700000000", 1_700_000_000),
        ("1.7e9", 1_700_000_000),
        ("2026-11-20T10:15:30.999Z", utc_seconds(datetime(2026, 11, 20, 10, 15, 30, tzinfo=timezone.utc))),
        ("2026-11-20T10:15:30+01:00", utc_seconds(datetime(2026, 11, 20, 9, 15, 30, tzinfo=timezone.utc))),
        ("2026-11-20T10:15:30", None),  # no offset: the zone is unknown
        ("2026-02-29T10:15:30Z", None),
        ("2026-11-20T24:00:00Z", None),
        (True, None),
        (None, None),
        ([1], None),
        (1e30, None),
        ("yesterday", None),
    ],
)
def test_timestamp_forms(tmp_path, value, expected):
    path = write(tmp_path / "e.jsonl", jsonl({"user_id": "u", "event": "e", "timestamp": value}))
    result = load_events_file(path)
    assert result.log.timestamps.tolist() == ([] if expected is None else [expected])
    assert result.malformed_lines == (expected is None)


def test_nan_timestamp_is_malformed(tmp_path):
    path = write(tmp_path / "e.jsonl", '{"user_id": "u", "event": "e", "timestamp": NaN}\n')
    assert load_events_file(path).malformed_lines == 1


# --- JSON Lines -----------------------------------------------------------------------------

def test_jsonl_is_encoded_and_sorted_stably(tmp_path):
    path = write(tmp_path / "e.jsonl", jsonl(
        {"user_id": "b", "event": "deploy", "timestamp": 30, "props": {"team": "x"}},
        {"user_id": "a", "event": "create", "timestamp": 10},
        {"user_id": "c", "event": "deploy", "timestamp": 30},
        {"user_id": "a", "event": "deploy", "timestamp": 20},
    ))
    result = load_events_file(path)
    assert (result.total_lines, result.malformed_lines, result.first_errors) == (4, 0, [])
    assert events_of(result) == [
        ("a", "create", 10), ("a", "deploy", 20), ("b", "deploy", 30), ("c", "deploy", 30)
    ]
    assert sorted(result.log.user_names) == ["a", "b", "c"]
    assert result.log.event_code("deploy") is not None and result.log.event_code("x") is None


def test_malformed_lines_are_counted_and_reported(tmp_path):
    lines = [
        '{"user_id": "ok", "event": "e", "timestamp": 1}',
        "not json at all",
        '["a", "list"]',
        '{"event": "e", "timestamp": 1}',
        '{"user_id": "", "event": "e", "timestamp": 1}',
        '{"user_id": "u", "event": 5, "timestamp": 1}',
        '{"user_id": "u", "event": "e", "timestamp": "2026-13-01T00:00:00Z"}',
        "",
        "   ",
        '{"user_id": "u", "event": "e", "timestamp": 1} trailing',
        '   {"user_id": 42, "event": "e", "timestamp": 2}',
        '{"user_id": "' + "x" * 10_000 + '", "event": "e", "timestamp": "bad' + "y" * 10_000 + '"}',
    ]
    result = load_events_file(write(tmp_path / "e.jsonl", "\n".join(lines) + "\n"))
    assert events_of(result) == [("ok", "e", 1), ("42", "e", 2)]
    assert result.total_lines == 10 and result.malformed_lines == 8
    assert len(result.first_errors) == MAX_REPORTED_ERRORS
    assert [message.split(":")[0] for message in result.first_errors] == [
        "line 2", "line 3", "line 4", "line 5", "line 6"
    ]
    late = load_events_file(write(tmp_path / "late.jsonl", "\n".join(lines[6:]) + "\n"))
    assert [m.split(":")[0] for m in late.first_errors] == ["line 1", "line 4", "line 6"]
    assert all(len(message) < 160 for message in late.first_errors)


def test_errors_are_the_earliest_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(file_loader, "_CHUNK_LINES", 3)
    good = '{"user_id": "u", "event": "e", "timestamp": 1}'
    bad_time = '{"user_id": "u", "event": "e", "timestamp": "never"}'
    lines = [good, bad_time, good, "{", good, bad_time, "{", "{", bad_time, "{", good]
    result = load_events_file(write(tmp_path / "e.jsonl", "\n".join(lines)))
    assert result.malformed_lines == 7 and len(result.log) == 4
    assert [m.split(":")[0] for m in result.first_errors] == [
        "line 2", "line 4", "line 6", "line 7", "line 8"
    ]


def test_invalid_utf8_rejects_only_lines_whose_names_are_affected(tmp_path):
    data = (
        b'{"user_id": "caf\xc3\xa9", "event": "e", "timestamp": 1}\n'
        b'{"user_id": "bad\xff", "event": "e", "timestamp": 2}\n'
        b'{"user_id": "u", "event": "e", "timestamp": 3, "props": {"x": "\xfe"}}\n'
        b'{"user_id": "\\ud800", "event": "e", "timestamp": 4}\n'
    )
    result = load_events_file(write(tmp_path / "e.jsonl", data))
    assert events_of(result) == [("café", "e", 1), ("u", "e", 3)]
    assert result.malformed_lines == 2


def test_byte_order_mark_is_ignored(tmp_path):
    data = "\ufeff" + jsonl({"user_id": "u", "event": "e", "timestamp": 5})
    assert events_of(load_events_file(write(tmp_path / "e.json", data))) == [("u", "e", 5)]


# --- CSV ------------------------------------------------------------------------------------

def test_csv_with_reordered_and_extra_columns(tmp_path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Timestamp", "team", "event", "user_id"])
    writer.writerow(["2026-01-01T00:00:00Z", "a, b", "deploy", "u1"])
    writer.writerow(["1700000000", "", "create", "u2"])
    writer.writerow(["1700000000", "", "create"])  # too few fields
    writer.writerow(["1700000000", "", "", "u3"])  # empty event
    writer.writerow(["not a time", "", "create", "u4"])
    buffer.write("\n")
    result = load_events_file(write(tmp_path / "e.csv", "\ufeff" + buffer.getvalue()))
    assert events_of(result) == [
        ("u2", "create", 1_700_000_000),
        ("u1", "deploy", utc_seconds(datetime(2026, 1, 1, tzinfo=timezone.utc))),
    ]
    assert (result.total_lines, result.malformed_lines) == (5, 3)
    assert [m.split(":")[0] for m in result.first_errors] == ["line 4", "line 5", "line 6"]


def test_csv_without_required_columns_is_a_file_error(tmp_path):
    with pytest.raises(EventsFileError, match="timestamp"):
        load_events_file(write(tmp_path / "e.csv", "user_id,event,time\nu,e,1\n"))


def test_empty_files(tmp_path):
    for name, text in (("a.jsonl", ""), ("b.csv", ""), ("c.csv", "user_id,event,timestamp\n")):
        result = load_events_file(write(tmp_path / name, text))
        assert (len(result.log), result.total_lines, result.malformed_lines) == (0, 0, 0)


# --- files ----------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8).filter(lambda s: s.strip() == s and "\x00" not in s),
            st.sampled_from(["deploy", "create", "docs.view", "pipeline run"]),
            st.integers(0, 2_000_000_000),
        ),
        max_size=40,
    ),
    st.sampled_from([".jsonl", ".json.gz", ".csv", ".csv.gz"]),
)
def test_round_trip_in_every_format(tmp_path_factory, records, suffix):
    path = tmp_path_factory.mktemp("rt") / f"events{suffix}"
    if ".csv" in suffix:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["user_id", "event", "timestamp"])
        writer.writerows(records)
        write(path, buffer.getvalue())
    else:
        write(path, jsonl(*({"user_id": u, "event": e, "timestamp": t} for u, e, t in records)))
    result = load_events_file(path)
    assert result.malformed_lines == 0
    assert events_of(result) == sorted(records, key=lambda record: record[2])  # stable by time


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(EventsFileError, match="unknown events file type"):
        load_events_file(write(tmp_path / "events.txt", ""))
    with pytest.raises(FileNotFoundError):
        load_events_file(tmp_path / "absent.jsonl")


def test_corrupt_and_truncated_gzip_are_file_errors(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(EventsFileError, match="gzip"):
        load_events_file(path)
    truncated = tmp_path / "cut.jsonl.gz"
    compressed = gzip.compress(jsonl(*({"user_id": "u", "event": "e", "timestamp": i}
                                       for i in range(2000))).encode())
    truncated.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(EventsFileError, match="gzip"):
        load_events_file(truncated)


def test_fingerprint_changes_when_the_file_does(tmp_path):
    path = write(tmp_path / "e.jsonl", jsonl({"user_id": "u", "event": "e", "timestamp": 1}))
    first = file_fingerprint(path)
    assert file_fingerprint(path) == first
    with open(path, "a") as handle:
        handle.write(jsonl({"user_id": "v", "event": "e", "timestamp": 2}))
    os.utime(path, ns=(first.mtime_ns, first.mtime_ns))  # same mtime: the size still differs
    assert file_fingerprint(path) != first
    assert file_fingerprint(path).size == os.path.getsize(path)


# --- EventLog -------------------------------------------------------------------------------

def test_build_sorts_stably_and_drops_unused_names():
    log = EventLog.build(
        np.array([2, 0, 2]), np.array([1, 1, 0]), np.array([5, 3, 3]),
        ["a", "unused", "c"], ["x", "y"],
    )
    assert log.timestamps.tolist() == [3, 3, 5]
    assert [log.user_names[u] for u in log.user_ids] == ["a", "c", "c"]
    assert [log.event_names[e] for e in log.event_ids] == ["y", "x", "y"]
    assert log.user_names == ("a", "c")
    assert len(log) == 3
    assert log.event_code("y") == log.event_names.index("y")
    assert log.nbytes >= 3 * 16
    with pytest.raises(ValueError):
        log.timestamps[0] = 1  # read-only


def test_columns_are_16_bytes_per_event():
    log = EventLog.build(
        np.zeros(1000, dtype=np.int32), np.zeros(1000, dtype=np.int32),
        np.arange(1000), ["u"], ["e"],
    )
    assert log.user_ids.nbytes + log.event_ids.nbytes + log.timestamps.nbytes == 16_000


@pytest.mark.parametrize(
    "columns",
    [
        (np.array([0, 0], np.int32), np.array([0, 0], np.int32), np.array([2, 1], np.int64)),
        (np.array([0, 1], np.int32), np.array([0, 0], np.int32), np.array([1, 2], np.int64)),
        (np.array([0], np.int64), np.array([0], np.int32), np.array([1], np.int64)),
        (np.array([0, 0], np.int32), np.array([0], np.int32), np.array([1, 2], np.int64)),
    ],
)
def test_direct_construction_checks_invariants(columns):
    with pytest.raises((TypeError, ValueError)):
        EventLog(*columns, ("u",), ("e",))


def test_empty_log():
    log = EventLog.empty()
    assert len(log) == 0 and log.event_code("e") is None
    assert math.isclose(log.user_ids.nbytes, 0)
