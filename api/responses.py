"""JSON responses encoded once per second, from bodies converted once per snapshot.

A section's JSON is its header (``time_range``, ``generated_at``, ``sources``, ``stale``) followed
by its typed body's fields. The body only changes with its snapshot, so it is turned into plain
data once per snapshot (:func:`exporter.results.to_json`). What moves between snapshots are the
ages of the data, stated in whole seconds (:func:`exporter.health.age_seconds`), the sources'
status and the dashboard's own ``generated_at``: so every request for the same thing within one
second, with no change of health, is answered with the same bytes, encoded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from exporter.areas.base import Snapshot
from exporter.health import HealthRegistry, second
from exporter.results import to_json
from exporter.timeranges import iso_z

from .jsonio import dumps


@dataclass(frozen=True)
class _Encoded:
    stamp: Hashable  # what the bytes were made from: reusable while it is the same
    body: bytes
    valid_until: float  # clock time after which they may no longer hold (a snapshot expires)


class Responses:
    """The application's encoded responses, each kept until what it was made from changes.

    What is kept is bounded by the memo's keys (a body and a response per section parameter
    set) plus what callers keep under their own keys (the dashboard per time range).
    """

    def __init__(self, health: HealthRegistry, clock: Callable[[], float]) -> None:
        self._health = health
        self._clock = clock
        self._bodies: dict[Hashable, tuple[Any, dict[str, Any]]] = {}
        self._encoded: dict[Hashable, _Encoded] = {}

    def section(self, key: Hashable, snapshot: Snapshot) -> bytes:
        """The section's JSON as of now; ``key`` names the snapshot's parameters."""
        stamp = (id(snapshot.body), snapshot.stale, self._health.revision, second(self._clock()))
        return self.kept(key, stamp) or self.keep(key, stamp, dumps(self.section_data(key, snapshot)).encode())

    def section_data(self, key: Hashable, snapshot: Snapshot) -> dict[str, Any]:
        """The section as plain data: its header as of now, then its body."""
        header: dict[str, Any] = {
            "time_range": snapshot.time_range,
            "generated_at": snapshot.generated_at_iso,
            "sources": {name: to_json(self._health.summary(name, snapshot.generated_at)) for name in snapshot.sources},
        }
        if snapshot.stale:
            header["stale"] = True
        return header | self._plain_body(key, snapshot.body)

    def sources(self) -> dict[str, Any]:
        """Every source's summary as of now (the dashboard's ``sources``)."""
        return {name: to_json(self._health.summary(name)) for name in self._health.sources}

    def now_iso(self) -> str:
        """Now, to the second, as responses state it."""
        return iso_z(datetime.fromtimestamp(second(self._clock()), timezone.utc))

    def kept(self, key: Hashable, stamp: Hashable) -> bytes | None:
        """The bytes kept under ``key`` if they were made from ``stamp`` and still hold."""
        encoded = self._encoded.get(key)
        if encoded is None or encoded.stamp != stamp or self._clock() >= encoded.valid_until:
            return None
        return encoded.body

    def keep(self, key: Hashable, stamp: Hashable, body: bytes, valid_until: float = math.inf) -> bytes:
        _bounded_set(self._encoded, key, _Encoded(stamp, body, valid_until))
        return body

    def _plain_body(self, key: Hashable, body: Any) -> dict[str, Any]:
        # The snapshot is told by its body's identity: the memo holds one object per load, and the
        # reference kept here stops its id being reused.
        kept = self._bodies.get(key)
        if kept is None or kept[0] is not body:
            kept = (body, to_json(body))
            _bounded_set(self._bodies, key, kept)
        return kept[1]


# Responses kept at most: every published section and far more than a dashboard's callers ask
# for; one-off parameters (an event name, a filter) must not be kept for the life of the process.
MAX_KEPT = 1024


def _bounded_set(table: dict[Hashable, Any], key: Hashable, value: Any) -> None:
    """``table[key] = value``, dropping the oldest entries beyond :data:`MAX_KEPT`."""
    table.pop(key, None)
    table[key] = value
    while len(table) > MAX_KEPT:
        del table[next(iter(table))]
