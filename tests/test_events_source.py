"""The identified events source (file backend): change detection, failures, malformed lines, /health."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import EventsConfig
from exporter.errors import SourceError
from exporter.events.file_loader import EventsFile
from exporter.events.file_source import EventsFileSource
from exporter.health import HealthRegistry
from tests.conftest import FakeClock
from tests.fakes.events import Event, bump_mtime, event_line, write_events

NOW = 1_780_000_000  # a fixed "now" (2026-05-28): files are written relative to it
LOGIN = "authentication.complete.user_login"


def sample_events(users: int = 20) -> list[Event]:
    return [Event(f"u-{u}", LOGIN, NOW - 3_600 * (u + 1)) for u in range(users)]


@pytest.fixture
def clock() -> FakeClock:  # also the service's clock in make_client
    return FakeClock(NOW)


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """Records every read of an events file that parses (all of it, or what was appended), with
    the name of the thread it ran in."""
    threads: list[str] = []
    real = EventsFile.refresh

    def counting(self, fingerprint=None):
        threads.append(threading.current_thread().name)
        return real(self, fingerprint)

    monkeypatch.setattr(EventsFile, "refresh", counting)
    return threads


def make_source(path, clock) -> tuple[EventsFileSource, HealthRegistry]:
    health = HealthRegistry(clock)
    health.register("events")
    return EventsFileSource(EventsConfig(path=str(path)), health, clock=clock), health


async def test_parses_in_a_worker_thread_and_only_when_the_file_changes(tmp_path, clock, parses):
    path = write_events(tmp_path / "events.jsonl", sample_events(20))
    source, health = make_source(path, clock)
    first = await source.read()
    assert len(first.log) == 20 and len(parses) == 1
    assert parses[0] != threading.main_thread().name  # the event loop's thread never parses

    assert await source.read() is first  # unchanged: one stat, no parse
    assert len(parses) == 1

    write_events(path, sample_events(25))
    second = await source.read()
    assert len(second.log) == 25 and len(parses) == 2

    write_events(path, sample_events(24) + [Event("u-x", LOGIN, NOW - 1)])  # same size: the mtime tells
    bump_mtime(path)
    assert (await source.read()).log.user_names != second.log.user_names and len(parses) == 3
    assert health.sources["events"].status == "up"


async def test_an_appended_file_is_read_on_and_health_shows_what_reads_cost(tmp_path, clock, parses):
    path = write_events(tmp_path / "events.jsonl", sample_events(20))
    health = HealthRegistry(clock)
    health.register("events")
    source = EventsFileSource(EventsConfig(path=str(path)), health, clock=clock, properties=["team"])
    first = await source.read()
    before = first.log.timestamps.tolist()
    with open(path, "a") as handle:
        handle.write('{"user_id": "u-new", "event": "%s", "timestamp": %d, "properties": {"team": "web"}}\n'
                     % (LOGIN, NOW - 7_200))
    second = await source.read()
    assert (second.read_kind, len(second.log), len(parses)) == ("append", 21, 2)
    assert first.log.timestamps.tolist() == before  # the earlier snapshot is untouched
    assert second.log.properties["team"].values == ("web",)
    details = source.details()
    assert details["last_read"] == "append" and details["load_seconds"] == round(first.read_seconds, 3)
    assert details["last_read_seconds"] == round(second.read_seconds, 3)
    assert details["memory_bytes"] == second.log.nbytes
    assert details["bytes_per_event"] == round(second.log.nbytes / 21, 1) > 16


async def test_concurrent_reads_share_one_parse(tmp_path, clock, parses):
    source, _ = make_source(write_events(tmp_path / "events.jsonl", sample_events()), clock)
    snapshots = await asyncio.gather(*(source.read() for _ in range(5)))
    assert len(parses) == 1 and all(s is snapshots[0] for s in snapshots)


async def test_a_missing_file_marks_the_source_down_and_keeps_the_last_good_log(tmp_path, clock, parses):
    path = write_events(tmp_path / "events.jsonl", sample_events())
    source, health = make_source(path, clock)
    good = await source.read()
    os.replace(path, tmp_path / "elsewhere.jsonl")
    clock.advance(1)
    with pytest.raises(SourceError) as raised:
        await source.read()
    assert raised.value.code == "file_unreadable" and str(path) in str(raised.value)
    assert health.summary("events").status == "down" and "does not exist" in health.summary("events").error
    assert source.snapshot is good

    os.replace(tmp_path / "elsewhere.jsonl", path)  # the same file back: same fingerprint, no re-parse
    clock.advance(1)
    assert await source.read() is good and len(parses) == 1
    assert health.summary("events").status == "up"


async def test_an_unusable_file_is_not_parsed_again_until_it_changes(tmp_path, clock, parses):
    path = tmp_path / "events.csv"
    path.write_text("who,what,when\nu-1,login,2026-01-01T00:00:00Z\n")
    source, health = make_source(path, clock)
    for _ in range(2):
        with pytest.raises(SourceError) as raised:
            await source.read()
        assert raised.value.code == "invalid_file" and "user_id, event, timestamp" in str(raised.value)
    assert len(parses) == 1
    assert "lacks column" in health.summary("events").error

    path.write_text("user_id,event,timestamp\nu-1,login,2026-01-01T00:00:00Z\n")
    assert len((await source.read()).log) == 1 and len(parses) == 2


# --- through the service: /health, /metrics and the endpoints ------------------------------------

def metric_values(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


MALFORMED = [
    "not json at all\n",
    '{"user_id": "u-1", "event": "x"}\n',  # no timestamp
    '{"user_id": "", "event": "x", "timestamp": "2026-01-01T00:00:00Z"}\n',
    '{"user_id": "u-1", "event": "x", "timestamp": "2026-01-01T00:00:00"}\n',  # no offset
    '{"user_id": "u-1", "event": 7, "timestamp": 1}\n',
    '["a", "list"]\n',
    '{"user_id": "u-1", "event": "x", "timestamp": "yesterday"}\n',
    "\x00\x01\x02\xff garbage\n",
    '{"user_id": "u-1", "event": "x", "timestamp": "2026-13-01T00:00:00Z"}\n',
    '{"user_id": {"nested": 1}, "event": "x", "timestamp": 1}\n',
]


async def test_malformed_lines_are_counted_in_health_and_the_metric(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", sample_events(90), extra_lines=MALFORMED)  # 10% malformed
    client, _ = await make_client(**{"events.path": str(path)})
    response = await client.get("/api/v1/funnel/onboarding")
    assert response.status == 200 and (await response.json())["total_users"] == 90

    details = (await (await client.get("/health")).json())["sources"]["events"]
    assert details["status"] == "up"
    counted = (details["events"], details["users"], details["total_lines"], details["malformed_lines"])
    assert counted == (90, 90, 100, 10)
    assert "u-1" not in str(details)  # line excerpts go to the log only: they may quote user ids
    metrics = metric_values(await (await client.get("/metrics")).text())
    assert metrics[("analytics_events_malformed_lines", ())] == 10
    assert metrics[("analytics_source_up", (("source", "events"),))] == 1


async def test_events_after_now_are_reported(tmp_path, make_client):
    future = [Event("u-late", LOGIN, NOW + 86_400 * d) for d in (1, 2, 3)]
    path = write_events(tmp_path / "events.jsonl", sample_events(5) + future)
    client, _ = await make_client(**{"events.path": str(path)})
    body = await (await client.get("/api/v1/funnel/onboarding")).json()
    assert body["total_users"] == 5  # nobody enters a funnel in the future
    details = (await (await client.get("/health")).json())["sources"]["events"]
    assert details["events_after_now"] == 3


def truncated_gzip(path):
    whole = gzip.compress("".join(event_line(e) for e in sample_events(200)).encode())
    path.write_bytes(whole[: len(whole) // 2])


BAD_FILES = {
    "empty.jsonl": (lambda p: p.write_text(""), 200),
    "binary.jsonl": (lambda p: p.write_bytes(bytes(range(256)) * 40), 200),
    "binary.csv": (lambda p: p.write_bytes(b"user_id,event,timestamp\n" + bytes(range(1, 256)) * 40), 200),
    "wrong_columns.csv": (lambda p: p.write_text("a,b,c\n1,2,3\n"), 503),
    "truncated.jsonl.gz": (truncated_gzip, 503),
    "events.txt": (lambda p: p.write_text("hello\n"), 503),
    "a_directory.jsonl": (lambda p: p.mkdir(), 503),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
async def test_bad_files_never_crash_the_service_and_are_reported(tmp_path, make_client, name):
    make, expected = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    client, _ = await make_client(**{"events.path": str(path)})
    response = await client.get("/api/v1/funnel/onboarding")
    body = await response.json()
    assert response.status == expected
    health = await client.get("/health")
    events = (await health.json())["sources"]["events"]
    if expected == 200:
        assert body["total_users"] == 0 and events["status"] == "up"
        assert events["malformed_lines"] == events["total_lines"]
    else:
        assert body["error"]["code"] in {"invalid_file", "file_unreadable"} and str(path) in body["error"]["message"]
        assert events["status"] == "down" and str(path) in events["error"]
    assert health.status == 200
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/api/v1/usage-trends")).status == 200  # Plausible keeps serving


async def test_without_an_events_path_the_source_is_disabled_and_says_which_setting(make_client):
    client, _ = await make_client()
    events = (await (await client.get("/health")).json())["sources"]["events"]
    assert events["status"] == "disabled" and "events.path (EVENTS_PATH)" in events["error"]
    response = await client.get("/api/v1/user-segments")
    assert response.status == 503 and "EVENTS_PATH" in (await response.json())["error"]["message"]
    names = {family.name for family in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    assert not {n for n in names if n.startswith(("analytics_funnel", "analytics_segment", "analytics_events"))}
    usage = await (await client.get("/api/v1/usage-trends")).json()
    assert usage["basis"] == "plausible_visitors" and "events" not in usage["sources"]
