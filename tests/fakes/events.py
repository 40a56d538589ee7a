"""Identified events files for tests: written as docs/upstreams.md#events-file describes, and read back plainly.

The reader is deliberately naive (``json`` and ``datetime.fromisoformat`` per line) so that tests
can compute expected numbers without the service's vectorised loader.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, NamedTuple


class Event(NamedTuple):
    user: str
    event: str
    ts: int  # epoch seconds


class PropertyEvent(NamedTuple):
    """An event with properties: ``(user, event, ts)`` as :class:`Event` (which stays a 3-tuple,
    as the many tests that unpack it expect), then its ``(name, value)`` pairs (a tuple, so that
    events stay hashable)."""

    user: str
    event: str
    ts: int
    properties: tuple[tuple[str, str], ...] = ()


AnyEvent = Event | PropertyEvent


def event_properties(event: AnyEvent) -> dict[str, str]:
    """The event's properties by name (none for an :class:`Event`)."""
    return dict(getattr(event, "properties", ()))


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_line(event: AnyEvent) -> str:
    record = {"user_id": event.user, "event": event.event, "timestamp": iso(event.ts)}
    if properties := event_properties(event):
        record["properties"] = properties
    return json.dumps(record) + "\n"


def write_events(path: Path, events: Iterable[AnyEvent], *, extra_lines: Iterable[str] = ()) -> Path:
    """Write ``events`` as JSON Lines (in the order given), then ``extra_lines`` verbatim."""
    text = "".join(map(event_line, events)) + "".join(extra_lines)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def read_events(path: Path) -> list[Event]:
    """Every well-formed event of a JSON Lines file (optionally gzip), in file order."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    events = []
    for line in raw.decode().splitlines():
        try:
            record = json.loads(line)
            moment = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        events.append(Event(str(record["user_id"]), record["event"], int(moment.timestamp())))
    return events


def bump_mtime(path: Path, seconds: int = 10) -> None:
    """Move the file's modification time forward, so a rewrite of equal size is seen as a change."""
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + seconds * 1_000_000_000))
