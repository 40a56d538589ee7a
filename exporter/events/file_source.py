"""The identified events source, file backend (docs/upstreams.md#identified-events).

It answers the questions of :class:`~exporter.events.backend.EventsBackend` from the events in
memory: each reads the file (if it changed) and runs the pure numpy analysis in a worker thread.

The file is read into a columnar :class:`~exporter.events.log.EventLog` in a worker thread, so
the event loop keeps serving while a large file is parsed. Every :meth:`EventsFileSource.read`
first compares the file's fingerprint (modification time and size) with the one last read, and
parses the file again only when it differs: the areas built on the events may all ask on every
refresh, and an unchanged file costs them one ``stat``.

A read that fails (file missing or unreadable, not an events file, corrupt gzip) raises
:class:`SourceError` and marks the source down; the log in memory is kept, so the file coming
back unchanged needs no re-read, and the areas keep serving their last good snapshots within
the memo's hard limit (docs/api.md#caching-and-freshness). A file whose content could not be parsed is not
parsed again until it changes. Malformed lines never fail a read: they are skipped, counted and
reported (``/health`` and ``analytics_events_malformed_lines``); the first few reasons go to the
service log, not to ``/health``, because they quote the lines, which may hold user ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from ..analysis.funnels import FunnelDefinition
from ..analysis.retention import (
    IntervalGrid,
    LifecycleCounts,
    RetentionCounts,
    RetentionQuery,
    StickinessCounts,
)
from ..analysis.segments import UserActivity
from ..analysis.usage import DailyUsers, UserCounts
from ..config import EventsConfig
from ..errors import SourceError
from ..health import HealthRegistry
from ..timeranges import iso_z
from .file_loader import (
    EventsFileError,
    FileFingerprint,
    LoadResult,
    file_fingerprint,
    load_events_file,
)
from .log import EventLog
from .log_activity import (
    active_user_count,
    daily_users,
    feature_dates,
    feature_unique_users,
    total_user_count,
    user_activity,
)
from .log_funnels import FunnelReach, funnel_reach
from .log_retention import lifecycle_counts, retention_counts, stickiness_counts

SOURCE = "events"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsSnapshot:
    """The events of one read of the file, and what was wrong with the lines skipped."""

    log: EventLog
    malformed_lines: int
    total_lines: int  # non-blank data lines, malformed ones included
    fingerprint: FileFingerprint
    loaded_at: float  # clock time the file was parsed


class EventsFileSource:
    """One events file, parsed when it changes; ``read()`` is health-tracked as source ``events``."""

    kind = "file"

    def __init__(self, config: EventsConfig, health: HealthRegistry, *, clock: Callable[[], float] = time.time) -> None:
        if not config.path:
            raise ValueError("the events file source needs events.path")
        self.path = config.path
        self._health = health
        self._clock = clock
        self._lock = asyncio.Lock()  # one read at a time: concurrent callers share its outcome
        self._snapshot: EventsSnapshot | None = None
        self._unparsable: tuple[FileFingerprint, str] | None = None  # a file that failed to parse, and why

    @property
    def snapshot(self) -> EventsSnapshot | None:
        """The last good read, if any (without touching the file)."""
        return self._snapshot

    async def read(self) -> EventsSnapshot:
        """The events as the file holds them now; parses the file only if it changed."""
        async with self._lock:
            return await self._health.track(SOURCE, self._refresh)

    async def _refresh(self) -> EventsSnapshot:
        known = None if self._snapshot is None else self._snapshot.fingerprint
        try:
            fingerprint, loaded = await asyncio.to_thread(_read_if_changed, self.path, known, self._unparsable)
        except OSError as error:
            raise SourceError(SOURCE, _describe_os_error(self.path, error), code="file_unreadable") from None
        except _Unparsable as failure:
            self._unparsable = (failure.fingerprint, failure.reason)
            raise SourceError(SOURCE, failure.reason, code="invalid_file") from None
        if loaded is not None:
            self._snapshot = EventsSnapshot(loaded.log, loaded.malformed_lines, loaded.total_lines, fingerprint,
                                            self._clock())
            self._unparsable = None
            _log_load(self.path, loaded)
        return self._snapshot

    # -- EventsBackend: the analyses run on the log in memory, off the event loop ---------------

    async def funnel_reach(self, funnel: FunnelDefinition, *, range_start: int, range_end: int) -> FunnelReach:
        log = (await self.read()).log
        return await asyncio.to_thread(funnel_reach, log, funnel, range_start=range_start, range_end=range_end)

    async def segment_activity(self, *, now: int, meaningful_events: Collection[str] | None = None,
                               feature_events: Mapping[str, str] | None = None) -> UserActivity:
        log = (await self.read()).log
        return await asyncio.to_thread(user_activity, log, now=now, meaningful_events=meaningful_events,
                                       feature_events=feature_events)

    async def user_counts(self, *, start: int, end: int,
                          meaningful_events: Collection[str] | None = None) -> UserCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(_user_counts, log, start, end, meaningful_events)

    async def feature_users(self, event_names: Collection[str], *, start: int, end: int) -> dict[str, int]:
        log = (await self.read()).log
        return await asyncio.to_thread(feature_unique_users, log, event_names, start, end)

    async def feature_dates(self, event_names: Collection[str], *, end: int) -> dict[str, tuple[int, int] | None]:
        log = (await self.read()).log
        return await asyncio.to_thread(feature_dates, log, event_names, end)

    async def daily_users(self, event_names: Collection[str], *, start: int, end: int,
                          meaningful_events: Collection[str] | None = None) -> DailyUsers:
        log = (await self.read()).log
        return await asyncio.to_thread(daily_users, log, event_names, start, end, meaningful_events=meaningful_events)

    async def retention_counts(self, query: RetentionQuery, grid: IntervalGrid) -> RetentionCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(retention_counts, log, query, grid)

    async def lifecycle_counts(self, grid: IntervalGrid) -> LifecycleCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(lifecycle_counts, log, grid)

    async def stickiness_counts(self, *, now: int) -> StickinessCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(stickiness_counts, log, now=now)

    def details(self) -> dict[str, Any]:
        """Facts for ``/health``: what the last good read held and how many lines it skipped."""
        facts: dict[str, Any] = {"kind": "file", "path": self.path}
        snapshot = self._snapshot
        if snapshot is None:
            return facts
        timestamps = snapshot.log.timestamps
        # Events stamped after now are kept (clocks drift) but are a sign of a bad producer.
        future = len(timestamps) - int(np.searchsorted(timestamps, self._clock(), side="right"))
        return facts | {"events": len(snapshot.log), "users": len(snapshot.log.user_names),
                        "total_lines": snapshot.total_lines, "malformed_lines": snapshot.malformed_lines,
                        "events_after_now": future,
                        "loaded_at": iso_z(datetime.fromtimestamp(snapshot.loaded_at, timezone.utc))}


def _user_counts(log: EventLog, start: int, end: int, meaningful: Collection[str] | None) -> UserCounts:
    return UserCounts(total=total_user_count(log, end),
                      active=active_user_count(log, start, end, meaningful_events=meaningful))


class _Unparsable(Exception):
    """The file's content cannot be read as events (raised in the worker thread)."""

    def __init__(self, fingerprint: FileFingerprint, reason: str) -> None:
        super().__init__(reason)
        self.fingerprint = fingerprint
        self.reason = reason


def _read_if_changed(path: str, known: FileFingerprint | None,
                     unparsable: tuple[FileFingerprint, str] | None
                     ) -> tuple[FileFingerprint, LoadResult | None]:
    """Blocking: the file's fingerprint, and its events unless the fingerprint is ``known``.

    The fingerprint is taken before parsing, so a file that changes during the read is seen as
    changed (and read again) next time.
    """
    fingerprint = file_fingerprint(path)
    if fingerprint == known:
        return fingerprint, None
    if unparsable is not None and unparsable[0] == fingerprint:
        raise _Unparsable(*unparsable)  # same bytes as the last failed parse: same verdict
    try:
        return fingerprint, load_events_file(path)
    except EventsFileError as error:
        reason = str(error).removeprefix(f"{path}: ")  # some messages name the file already
        raise _Unparsable(fingerprint, f"events file {path} cannot be used: {reason}") from None


def _describe_os_error(path: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"events file {path} does not exist"
    return f"cannot read events file {path}: {error.strerror or type(error).__name__}"


def _log_load(path: str, loaded: LoadResult) -> None:
    log.info("events file %s: %d events from %d lines", path, len(loaded.log), loaded.total_lines)
    if loaded.malformed_lines:
        log.warning("events file %s: skipped %d malformed line(s) of %d; first: %s", path, loaded.malformed_lines,
                    loaded.total_lines, "; ".join(loaded.first_errors))

