"""The identified events source, file backend (docs/upstreams.md#identified-events).

It answers the questions of :class:`~exporter.events.backend.EventsBackend` from the events in
memory: each reads the file (if it changed) and runs the pure numpy analysis in a worker thread.

The file is read into a columnar :class:`~exporter.events.log.EventLog` in a worker thread, so
the event loop keeps serving while a large file is parsed. Every :meth:`EventsFileSource.read`
first compares the file's fingerprint (modification time, size and identity) with the one last
read: an unchanged file costs one ``stat``; a file that only grew is read from where the last
read stopped (:class:`~exporter.events.file_loader.EventsFile`: the appended lines are parsed and
merged in); a replaced, truncated or rewritten file (and a ``.gz`` one on any change) is read
again in full.

A read that fails (file missing or unreadable, not an events file, corrupt gzip) raises
:class:`SourceError` and marks the source down; the log in memory is kept, so the file coming
back unchanged needs no re-read, and the areas keep serving their last good snapshots within
the memo's hard limit (docs/api.md#caching-and-freshness). A file whose content could not be parsed is not
parsed again until it changes. Malformed lines never fail a read: they are skipped, counted and
reported (``/health`` and ``analytics_events_malformed_lines``); the first few reasons go to the
service log, not to ``/health``, because they quote the lines, which may hold user ids.
``/health`` also shows what the last full read took (``load_seconds``) and the memory the log
holds per event (``bytes_per_event``), from which a deployment's memory can be sized.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from ..analysis.adoption import FeatureUsers
from ..analysis.breakdowns import EVERYONE, Selection
from ..analysis.experiments.event_metrics import (
    EXPERIMENT_PROPERTY,
    VARIANT_PROPERTY,
    ExperimentMetricsSettings,
    ExposureSums,
)
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
    EventsFile,
    EventsFileError,
    FileFingerprint,
    LoadResult,
    file_fingerprint,
)
from .log import EventLog
from .log_activity import daily_users, feature_dates, feature_unique_users, user_activity, user_counts
from .log_dimensions import select_users
from .log_exposures import MISSING, Exposures, exposure_sums
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
    read_kind: str = "full"  # this read: "full" (the whole file) or "append" (the bytes appended)
    read_seconds: float = 0.0  # this read's wall time
    load_seconds: float = 0.0  # the last full read's wall time


class EventsFileSource:
    """One events file, parsed when it changes; ``read()`` is health-tracked as source ``events``."""

    kind = "file"

    def __init__(self, config: EventsConfig, health: HealthRegistry, *, clock: Callable[[], float] = time.time,
                 properties: Collection[str] = ()) -> None:
        """``properties``: the event properties to keep (the dimensions' and the experiment
        exposure's); the others are not stored."""
        if not config.path:
            raise ValueError("the events file source needs events.path")
        self.path = config.path
        self._file = EventsFile(config.path, properties)
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
            fingerprint, loaded = await asyncio.to_thread(_read_if_changed, self._file, known, self._unparsable)
        except OSError as error:
            raise SourceError(SOURCE, _describe_os_error(self.path, error), code="file_unreadable") from None
        except _Unparsable as failure:
            self._unparsable = (failure.fingerprint, failure.reason)
            raise SourceError(SOURCE, failure.reason, code="invalid_file") from None
        if loaded is not None:
            self._snapshot = EventsSnapshot(loaded.log, loaded.malformed_lines, loaded.total_lines, fingerprint,
                                            self._clock(), loaded.kind, loaded.seconds,
                                            self._file.load_seconds or loaded.seconds)
            self._unparsable = None
            _log_load(self.path, loaded)
        return self._snapshot

    # -- EventsBackend: the analyses run on the log in memory, off the event loop ---------------

    async def funnel_reach(self, funnel: FunnelDefinition, *, range_start: int, range_end: int,
                           selection: Selection = EVERYONE) -> FunnelReach:
        log = (await self.read()).log
        return await asyncio.to_thread(funnel_reach, log, funnel, range_start=range_start, range_end=range_end,
                                       selection=selection)

    async def segment_activity(self, *, now: int, meaningful_events: Collection[str] | None = None,
                               feature_events: Mapping[str, str] | None = None,
                               selection: Selection = EVERYONE) -> UserActivity:
        log = (await self.read()).log
        return await asyncio.to_thread(user_activity, log, now=now, meaningful_events=meaningful_events,
                                       feature_events=feature_events, selection=selection)

    async def user_counts(self, *, start: int, end: int, meaningful_events: Collection[str] | None = None,
                          selection: Selection = EVERYONE) -> UserCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(user_counts, log, start, end, meaningful_events=meaningful_events,
                                       selection=selection)

    async def feature_users(self, event_names: Collection[str], *, start: int, end: int,
                            selection: Selection = EVERYONE) -> FeatureUsers:
        log = (await self.read()).log
        return await asyncio.to_thread(feature_unique_users, log, event_names, start, end, selection=selection)

    async def feature_dates(self, event_names: Collection[str], *, end: int) -> dict[str, tuple[int, int] | None]:
        log = (await self.read()).log
        return await asyncio.to_thread(feature_dates, log, event_names, end)

    async def daily_users(self, event_names: Collection[str], *, start: int, end: int,
                          meaningful_events: Collection[str] | None = None) -> DailyUsers:
        log = (await self.read()).log
        return await asyncio.to_thread(daily_users, log, event_names, start, end, meaningful_events=meaningful_events)

    async def retention_counts(self, query: RetentionQuery, grid: IntervalGrid,
                               selection: Selection = EVERYONE) -> RetentionCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(_grouped, retention_counts, log, selection, grid.end, query, grid)

    async def lifecycle_counts(self, grid: IntervalGrid, selection: Selection = EVERYONE) -> LifecycleCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(_grouped, lifecycle_counts, log, selection, grid.end, grid)

    async def stickiness_counts(self, *, now: int, selection: Selection = EVERYONE) -> StickinessCounts:
        log = (await self.read()).log
        return await asyncio.to_thread(_grouped, stickiness_counts, log, selection, now + 1, now=now)

    async def exposure_sums(self, settings: ExperimentMetricsSettings, *, end: int,
                            experiment_keys: Mapping[str, str] | None = None) -> ExposureSums:
        log = (await self.read()).log
        return await asyncio.to_thread(_exposure_sums, log, settings, end, experiment_keys)

    def details(self) -> dict[str, Any]:
        """Facts for ``/health``: what the last good read held and how many lines it skipped."""
        facts: dict[str, Any] = {"kind": "file", "path": self.path}
        snapshot = self._snapshot
        if snapshot is None:
            return facts
        timestamps = snapshot.log.timestamps
        # Events stamped after now are kept (clocks drift) but are a sign of a bad producer.
        future = len(timestamps) - int(np.searchsorted(timestamps, self._clock(), side="right"))
        events = len(snapshot.log)
        return facts | {"events": events, "users": len(snapshot.log.user_names),
                        "total_lines": snapshot.total_lines, "malformed_lines": snapshot.malformed_lines,
                        "events_after_now": future,
                        "loaded_at": iso_z(datetime.fromtimestamp(snapshot.loaded_at, timezone.utc)),
                        "load_seconds": round(snapshot.load_seconds, 3),
                        "last_read": snapshot.read_kind, "last_read_seconds": round(snapshot.read_seconds, 3),
                        "memory_bytes": snapshot.log.nbytes,
                        "bytes_per_event": round(snapshot.log.nbytes / events, 1) if events else None}


def _grouped(kernel, log: EventLog, selection: Selection, end: int, *args, **kwargs):
    """``kernel``'s counts of the users ``selection`` keeps, one group per breakdown value (their
    values as of ``end``); the counts carry the values."""
    chosen = select_users(log, selection, end)
    counts = kernel(log, *args, group_of_user=chosen.group_of_user(), n_groups=chosen.n_groups, **kwargs)
    return dataclasses.replace(counts, values=chosen.values)


def _exposure_sums(log: EventLog, settings: ExperimentMetricsSettings, end: int,
                   experiment_keys: Mapping[str, str] | None) -> ExposureSums:
    return exposure_sums(log, exposures_in_log(log, settings.exposure_event), settings, end=end,
                         experiment_keys=experiment_keys)


def exposures_in_log(log: EventLog, exposure_event: str) -> Exposures:
    """The log's exposure events, each with its ``experiment`` and ``variant`` property codes
    (``MISSING`` where the event lacks one; both are missing everywhere when the log was loaded
    without those properties)."""
    code = log.event_code(exposure_event)
    positions = np.flatnonzero(log.event_ids == code) if code is not None else np.empty(0, dtype=np.int64)
    experiments, experiment_labels = _property_codes(log, EXPERIMENT_PROPERTY, positions)
    variants, variant_labels = _property_codes(log, VARIANT_PROPERTY, positions)
    return Exposures(users=log.user_ids[positions], times=log.timestamps[positions], experiments=experiments,
                     variants=variants, experiment_labels=experiment_labels, variant_labels=variant_labels)


def _property_codes(log: EventLog, name: str, positions: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    column = log.properties.get(name)
    if column is None:
        return np.full(len(positions), MISSING, dtype=np.int64), ()
    return column.codes_at(positions).astype(np.int64), column.values


class _Unparsable(Exception):
    """The file's content cannot be read as events (raised in the worker thread)."""

    def __init__(self, fingerprint: FileFingerprint, reason: str) -> None:
        super().__init__(reason)
        self.fingerprint = fingerprint
        self.reason = reason


def _read_if_changed(events_file: EventsFile, known: FileFingerprint | None,
                     unparsable: tuple[FileFingerprint, str] | None
                     ) -> tuple[FileFingerprint, LoadResult | None]:
    """Blocking: the file's fingerprint, and its events unless the fingerprint is ``known``.

    The fingerprint is taken before reading, so a file that changes during the read is seen as
    changed (and read on) next time.
    """
    path = events_file.path
    fingerprint = file_fingerprint(path)
    if fingerprint == known:
        return fingerprint, None
    if unparsable is not None and unparsable[0] == fingerprint:
        raise _Unparsable(*unparsable)  # same bytes as the last failed parse: same verdict
    try:
        return fingerprint, events_file.refresh(fingerprint)
    except EventsFileError as error:
        reason = str(error).removeprefix(f"{path}: ")  # some messages name the file already
        raise _Unparsable(fingerprint, f"events file {path} cannot be used: {reason}") from None


def _describe_os_error(path: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"events file {path} does not exist"
    return f"cannot read events file {path}: {error.strerror or type(error).__name__}"


def _log_load(path: str, loaded: LoadResult) -> None:
    log.info("events file %s: %d events from %d lines (%s read of %d bytes in %.2f s)", path, len(loaded.log),
             loaded.total_lines, loaded.kind, loaded.bytes_read, loaded.seconds)
    if loaded.malformed_lines:
        log.warning("events file %s: skipped %d malformed line(s) of %d; first: %s", path, loaded.malformed_lines,
                    loaded.total_lines, "; ".join(loaded.first_errors))

