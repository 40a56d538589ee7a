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
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.funnels import FunnelDefinition, FunnelStep
from exporter.events import file_loader
from exporter.events.file_loader import (
    MAX_REPORTED_ERRORS,
    EventsFileError,
    file_fingerprint,
    load_events_file,
)
from exporter.events.log import EventLog
from exporter.events.log_activity import feature_unique_users, user_activity, user_counts
from exporter.events.log_funnels import funnel_reach


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
    monkeypatch.setattr(file_loader, "_CHUNK_BYTES", 100)  # two or three lines a chunk
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


# --- event properties -----------------------------------------------------------------------

def property_texts(result, name: str) -> list[str | None]:
    """Per event (in log order), the text of its value of property ``name``, None when absent."""
    column = result.log.properties[name]
    texts: list[str | None] = [None] * len(result.log)
    for position, code in zip(*(part.tolist() for part in column.carriers())):
        texts[position] = column.values[code]
    return texts


def test_json_property_values_are_kept_as_their_json_text(tmp_path):
    values = ["payments", 3, 2.5, True, False, 0, -1.25e-7, None, {"a": 1}, [1], "", 10**30, "caf\u00e9"]
    path = write(tmp_path / "e.jsonl", jsonl(*({"user_id": "u", "event": "e", "timestamp": t, "properties": {"team": v}}
                                              for t, v in enumerate(values))))
    result = load_events_file(path, properties=["team"])
    assert result.malformed_lines == 0 and len(result.log) == len(values)
    expected = ["payments", "3", "2.5", "true", "false", "0", json.dumps(-1.25e-7), None, None, None, None,
                str(10**30), "caf\u00e9"]
    assert property_texts(result, "team") == expected


def test_props_is_the_same_field_and_unasked_properties_are_not_kept(tmp_path):
    path = write(tmp_path / "e.jsonl", jsonl(
        {"user_id": "a", "event": "e", "timestamp": 1, "props": {"team": "x", "role": "dev"}},
        {"user_id": "b", "event": "e", "timestamp": 2, "properties": {"team": "y"}, "props": {"team": "z"}},
        {"user_id": "c", "event": "e", "timestamp": 3, "properties": "not an object"},
        {"user_id": "d", "event": "e", "timestamp": 4, "properties": None, "props": {"team": "w"}},
        {"user_id": "e", "event": "e", "timestamp": 5},
    ))
    result = load_events_file(path, properties=["team"])
    assert result.malformed_lines == 0
    assert property_texts(result, "team") == ["x", "y", None, "w", None]
    assert set(result.log.properties) == {"team"}
    assert load_events_file(path).log.properties == {}


def test_property_values_that_are_not_valid_utf8_are_absent(tmp_path):
    data = (b'{"user_id": "u", "event": "e", "timestamp": 1, "props": {"team": "\xfe"}}\n'
            b'{"user_id": "u", "event": "e", "timestamp": 2, "props": {"team": "\\ud800"}}\n'
            b'{"user_id": "u", "event": "e", "timestamp": 3, "props": {"team": "ok"}}\n')
    result = load_events_file(write(tmp_path / "e.jsonl", data), properties=["team"])
    assert result.malformed_lines == 0 and property_texts(result, "team") == [None, None, "ok"]
    assert result.log.properties["team"].values == ("ok",)


def test_csv_columns_beyond_the_three_are_properties(tmp_path):
    text = ("user_id,Team,event,timestamp,role\n"
            "u1,payments,deploy,1,dev\n"
            'u2,"a, b",deploy,2,\n'
            "u3,,deploy,3,sre\n")
    result = load_events_file(write(tmp_path / "e.csv", text), properties=["team", "role", "absent"])
    assert property_texts(result, "team") == ["payments", "a, b", None]
    assert property_texts(result, "role") == ["dev", None, "sre"]
    assert property_texts(result, "absent") == [None, None, None]


def test_property_columns_follow_the_sort_and_choose_their_layout(tmp_path):
    records = [{"user_id": f"u{i % 7}", "event": "e", "timestamp": 1000 - i,
                "properties": {"team": f"t{i % 3}", **({"variant": f"v{i % 2}"} if i % 50 == 0 else {})}}
               for i in range(1000)]
    result = load_events_file(write(tmp_path / "e.jsonl", jsonl(*records)), properties=["team", "variant"])
    in_log_order = records[::-1]  # the timestamps run backwards
    assert property_texts(result, "team") == [r["properties"]["team"] for r in in_log_order]
    assert property_texts(result, "variant") == [r["properties"].get("variant") for r in in_log_order]
    team, variant = result.log.properties["team"], result.log.properties["variant"]
    assert not team.is_sparse and team.codes.dtype == np.int8
    assert variant.is_sparse and len(variant.codes) == 20
    positions = np.array([0, 1, 999, 500, 998])
    assert team.codes_at(positions).tolist() == [team.code(in_log_order[p]["properties"]["team"]) for p in positions]
    assert variant.codes_at(positions).tolist() == [
        variant.code(in_log_order[p]["properties"]["variant"]) if "variant" in in_log_order[p]["properties"] else -1
        for p in positions]


def test_many_property_values_widen_the_codes(tmp_path):
    path = write(tmp_path / "e.jsonl", jsonl(*({"user_id": "u", "event": "e", "timestamp": i,
                                               "properties": {"id": f"v{i}"}} for i in range(40_000))))
    column = load_events_file(path, properties=["id"]).log.properties["id"]
    assert column.codes.dtype == np.int32 and len(column.values) == 40_000
    assert column.values[column.codes_at(np.array([39_999]))[0]] == "v39999"


# --- following a growing file ---------------------------------------------------------------

def assert_same_load(followed, fresh) -> None:
    """Two reads of the same bytes give the same log, counts and errors."""
    left, right = followed.log, fresh.log
    for name in ("user_ids", "event_ids", "timestamps"):
        assert getattr(left, name).tolist() == getattr(right, name).tolist(), name
    assert (left.user_names, left.event_names) == (right.user_names, right.event_names)
    assert left.properties.keys() == right.properties.keys()
    for name in left.properties:
        assert left.properties[name].values == right.properties[name].values
        assert [part.tolist() for part in left.properties[name].carriers()] == \
            [part.tolist() for part in right.properties[name].carriers()]
    assert (followed.total_lines, followed.malformed_lines, followed.first_errors) == \
        (fresh.total_lines, fresh.malformed_lines, fresh.first_errors)


def event_record(user, event, stamp, team, variant):
    record = {"user_id": user, "event": event, "timestamp": stamp}
    bag = {key: value for key, value in (("team", team), ("variant", variant)) if value is not _MISSING}
    if bag:
        record["props" if user.endswith("p") else "properties"] = bag
    return json.dumps(record)


_MISSING = object()
json_lines = st.one_of(
    st.builds(event_record, st.sampled_from(["a", "b", "c", "dp", "\u00e9", "7"]),
              st.sampled_from(["deploy", "create", "docs.view"]),
              st.one_of(st.integers(0, 50), st.sampled_from(["1970-01-01T00:00:30Z", "1970-01-01T01:00:00+01:00"])),
              st.sampled_from(["payments", "search", 3, True, None, "", _MISSING]),
              st.sampled_from(["control", "treatment", _MISSING, _MISSING, _MISSING])),
    st.sampled_from(["not json", "{", "[1, 2]", '{"user_id": "", "event": "e", "timestamp": 1}',
                     '{"user_id": "u", "event": "e", "timestamp": "never"}', "", "  ", '{"user_id": 5, "event": "e"}']),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(json_lines, max_size=30), st.lists(st.floats(0, 1), max_size=6), st.booleans())
def test_a_growing_json_lines_file_reads_as_a_fresh_load_would_at_every_step(tmp_path_factory, lines, cuts,
                                                                              trailing_newline):
    data = ("\n".join(lines) + ("\n" if trailing_newline else "")).encode()
    path = tmp_path_factory.mktemp("grow") / "events.jsonl"
    path.write_bytes(b"")
    followed = file_loader.EventsFile(path, ["team", "variant"])
    followed.refresh()
    published = []
    written = 0
    for cut in sorted(int(fraction * len(data)) for fraction in cuts) + [len(data)]:
        if cut <= written:
            continue
        with open(path, "ab") as handle:
            handle.write(data[written:cut])
        resumed_at = data.rfind(b"\n", 0, written) + 1  # the end of the last complete line read
        # A provisional last line (no newline yet) merged into the middle of the log by its time is
        # not undone: the next read is a full one. Otherwise only the new bytes are read.
        provisional = resumed_at < written
        written = cut
        result = followed.refresh()
        assert result is not None and result.kind in ({"append", "full"} if provisional else {"append"})
        if result.kind == "append":
            assert result.bytes_read == cut - resumed_at  # only the new bytes, and a partial line again
        assert_same_load(result, load_events_file(path, ["team", "variant"]))
        published.append((result, [getattr(result.log, n).copy() for n in ("user_ids", "event_ids", "timestamps")]))
    for result, columns in published:  # later reads never changed a log handed out earlier
        assert all(np.array_equal(getattr(result.log, n), c)
                   for n, c in zip(("user_ids", "event_ids", "timestamps"), columns))


def csv_row(user, team, stamp):
    buffer = io.StringIO()
    csv.writer(buffer).writerow([user, "deploy", stamp, team])
    return buffer.getvalue()


csv_rows = st.one_of(
    st.builds(csv_row, st.sampled_from(["a", "b", "c"]),
              st.sampled_from(["payments", "a, b", 'say "hi"', "two\nlines", ""]), st.integers(0, 50)),
    st.sampled_from(["u,deploy\n", ",deploy,1,x\n", "u,deploy,never,x\n", "\n", '"unclosed,deploy,1,x\n']),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(csv_rows, max_size=25), st.lists(st.floats(0, 1), max_size=6))
def test_a_growing_csv_file_reads_as_a_fresh_load_would_at_every_step(tmp_path_factory, rows, cuts):
    data = ("user_id,event,timestamp,team\n" + "".join(rows)).encode()
    path = tmp_path_factory.mktemp("grow") / "events.csv"
    path.write_bytes(b"")
    followed = file_loader.EventsFile(path, ["team"])
    followed.refresh()
    written = 0
    for cut in sorted(int(fraction * len(data)) for fraction in cuts) + [len(data)]:
        if cut <= written:
            continue
        with open(path, "ab") as handle:
            handle.write(data[written:cut])
        written = cut
        result = followed.refresh()
        assert result is not None
        assert_same_load(result, load_events_file(path, ["team"]))


def test_appends_read_only_the_new_bytes_and_a_partial_line_waits(tmp_path):
    path = write(tmp_path / "e.jsonl", jsonl(*({"user_id": f"u{i}", "event": "e", "timestamp": i} for i in range(100))))
    followed = file_loader.EventsFile(path)
    assert followed.refresh().kind == "full" and followed.refresh() is None
    line = jsonl({"user_id": "late", "event": "e", "timestamp": 50})
    with open(path, "a") as handle:
        handle.write(line[:20])
    partial = followed.refresh()
    assert (partial.kind, len(partial.log), partial.malformed_lines, partial.bytes_read) == ("append", 100, 1, 20)
    with open(path, "a") as handle:
        handle.write(line[20:])
    done = followed.refresh()
    assert (done.kind, len(done.log), done.malformed_lines, done.bytes_read) == ("append", 101, 0, len(line))
    assert done.log.timestamps.tolist() == sorted(list(range(100)) + [50])
    assert [done.log.user_names[u] for u in done.log.user_ids[50:52]] == ["u50", "late"]  # equal times: file order


def test_rewrites_rotations_and_compressed_files_are_read_in_full(tmp_path):
    def lines(first, count):
        return jsonl(*({"user_id": f"u{i}", "event": "e", "timestamp": i} for i in range(first, first + count)))

    path = Path(write(tmp_path / "e.jsonl", lines(0, 10)))
    followed = file_loader.EventsFile(path)
    followed.refresh()
    path.write_text(lines(100, 12))  # rewritten, longer: the start differs
    assert followed.refresh().kind == "full" and len(followed.refresh.__self__._state.columns) == 12
    path.write_text(lines(100, 5))  # truncated
    assert followed.refresh().kind == "full"
    rotated = Path(write(tmp_path / "new.jsonl", lines(100, 5) + lines(200, 3)))
    os.replace(rotated, path)  # a new file of the same name, starting like the old one
    result = followed.refresh()
    assert result.kind == "full" and len(result.log) == 8
    os.utime(path, ns=(0, 0))  # touched, same size: read again to be safe
    assert followed.refresh().kind == "full"

    compressed = Path(write(tmp_path / "e.jsonl.gz", lines(0, 10)))
    followed = file_loader.EventsFile(compressed)
    followed.refresh()
    with gzip.open(compressed, "ab") as handle:
        handle.write(lines(10, 5).encode())
    result = followed.refresh()
    assert result.kind == "full" and len(result.log) == 15


def test_a_failed_read_starts_over_next_time(tmp_path, monkeypatch):
    path = write(tmp_path / "e.jsonl", jsonl({"user_id": "u", "event": "e", "timestamp": 1}))
    followed = file_loader.EventsFile(path)
    followed.refresh()
    with open(path, "a") as handle:
        handle.write(jsonl({"user_id": "v", "event": "e", "timestamp": 2}))
    monkeypatch.setattr(file_loader, "_parse_timestamps", lambda raw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        followed.refresh()
    monkeypatch.undo()
    result = followed.refresh()
    assert result.kind == "full" and len(result.log) == 2


def test_event_codes_widen_as_names_come_and_appends_merge_them(tmp_path):
    def lines(names, first_second):
        return jsonl(*({"user_id": "u", "event": name, "timestamp": first_second + i} for i, name in enumerate(names)))

    path = Path(write(tmp_path / "e.jsonl", lines([f"e{i}" for i in range(100)], 1000)))
    followed = file_loader.EventsFile(path)
    assert followed.refresh().log.event_ids.dtype == np.int8
    with open(path, "a") as handle:  # 200 more names, earlier in time: merged into the middle
        handle.write(lines([f"f{i}" for i in range(200)], 900))
    grown = followed.refresh()
    assert grown.kind == "append" and grown.log.event_ids.dtype == np.int16
    assert_same_load(grown, load_events_file(path))
    assert [grown.log.event_names[e] for e in grown.log.event_ids[:3]] == ["f0", "f1", "f2"]


def test_an_appended_file_answers_every_analysis_as_a_fresh_load(tmp_path):
    rng = np.random.default_rng(5)
    now, steps = 1_780_000_000, ["signup", "create", "deploy"]

    def records(count, start, end):
        return [{"user_id": f"u{u}", "event": steps[e], "timestamp": int(t), "properties": {"team": f"t{u % 3}"}}
                for u, e, t in zip(rng.integers(0, 40, count), rng.integers(0, 3, count),
                                   np.sort(rng.integers(start, end, count)))]

    path = Path(write(tmp_path / "e.jsonl", jsonl(*records(3000, now - 60 * 86_400, now - 86_400))))
    followed = file_loader.EventsFile(path, ["team"])
    followed.refresh()
    with open(path, "a") as handle:  # the next day's events, a few of them late
        handle.write(jsonl(*records(300, now - 2 * 86_400, now)))
    grown = followed.refresh()
    fresh = load_events_file(path, ["team"])
    assert grown.kind == "append"

    funnel = FunnelDefinition("f", "", tuple(FunnelStep(s, s) for s in steps), window_seconds=7 * 86_400)

    def answers(log):
        return (funnel_reach(log, funnel, range_start=now - 30 * 86_400, range_end=now),
                user_activity(log, now=now, meaningful_events=["create", "deploy"]),
                user_counts(log, now - 7 * 86_400, now).active,
                feature_unique_users(log, steps, now - 7 * 86_400, now))

    reach, activity, active, features = answers(grown.log)
    reach_fresh, activity_fresh, active_fresh, features_fresh = answers(fresh.log)
    assert all(np.array_equal(a, b) for a, b in zip((reach.users, reach.levels, *reach.step_times),
                                                    (reach_fresh.users, reach_fresh.levels, *reach_fresh.step_times)))
    assert all(np.array_equal(getattr(activity, f), getattr(activity_fresh, f), equal_nan=True)
               for f in ("users", "l28", "l28_prev", "recency", "breadth", "age", "gap"))
    assert (active, features) == (active_fresh, features_fresh)
