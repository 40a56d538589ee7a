"""What the service knows about each upstream: up or down, since when, how busy, how slow.

Sources report here; ``/health``, the ``sources`` object of every JSON section and the
service-health metrics read from here, so all three tell the same story.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Awaitable, Callable, Literal, TypeVar

from .errors import SourceError
from .results import SECONDS, Timestamp, declare
from .timeranges import iso_z

T = TypeVar("T")
log = logging.getLogger(__name__)

HOUR = 3600.0
# Refresh durations span a cached file read (ms) to a slow upstream with retries (tens of s).
REFRESH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class SourceSummary:
    """A source as a response states it."""

    status: Literal["up", "down", "disabled"] = declare("up, down (its last refresh failed) or disabled")
    last_success: Timestamp | None = declare("when the data was fetched: the source's last success, or the "
                                             "snapshot's time in a section")
    age_seconds: float | None = declare("seconds since last_success (whole seconds)", SECONDS)
    error: str | None = declare("why the source is down or disabled; null when up")


@dataclass
class SourceState:
    name: str
    disabled_reason: str | None = None  # set when the source is not configured
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    last_refresh_seconds: float | None = None
    requests: Counter[str] = field(default_factory=Counter)
    request_times: deque[float] = field(default_factory=deque)  # of the last hour's requests
    refresh_bucket_counts: list[int] = field(default_factory=lambda: [0] * len(REFRESH_BUCKETS))
    refresh_count: int = 0
    refresh_sum: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)  # source-specific facts (e.g. budget)

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.last_success is None:
            return "down"
        if self.last_failure is not None and self.last_failure > self.last_success:
            return "down"
        return "up"

    @property
    def error(self) -> str | None:
        if not self.enabled:
            return self.disabled_reason
        if self.status == "down":
            return self.last_error or "no successful refresh yet"
        return None


class HealthRegistry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.sources: dict[str, SourceState] = {}
        # Bumped on every change recorded here, so what is derived from the states (the health
        # families of /metrics, the status JSON) is re-derived only when it can differ.
        self.revision = 0

    def register(self, name: str, disabled_reason: str | None = None) -> SourceState:
        state = self.sources[name] = SourceState(name, disabled_reason)
        self.revision += 1
        return state

    def log_disabled(self) -> None:
        """Log each disabled source with why (at start-up; enabled ones log their first outcome)."""
        for name, state in self.sources.items():
            if not state.enabled:
                log.warning("source %s is disabled: %s", name, state.disabled_reason)

    def record_request(self, name: str, outcome: str) -> None:
        state = self.sources[name]
        state.requests[outcome] += 1
        state.request_times.append(self.clock())
        self._forget_before(state, self.clock() - HOUR)
        self.revision += 1

    def requests_in_last_hour(self, name: str) -> int:
        """Requests actually sent to source ``name`` in the last hour, whatever asked for them."""
        state = self.sources[name]
        self._forget_before(state, self.clock() - HOUR)
        return len(state.request_times)

    @staticmethod
    def _forget_before(state: SourceState, moment: float) -> None:
        while state.request_times and state.request_times[0] <= moment:
            state.request_times.popleft()

    async def track(self, name: str, load: Callable[[], Awaitable[T]]) -> T:
        """Run one refresh of source ``name``, recording its duration and outcome."""
        state = self.sources[name]
        before = (state.status, state.error) if state.last_success or state.last_failure else None
        started = time.perf_counter()
        try:
            result = await load()
        except Exception as error:
            state.last_failure = self.clock()
            state.last_error = describe_failure(error)
            raise
        else:
            state.last_success = self.clock()
            return result
        finally:
            self._observe(state, time.perf_counter() - started)
            self.revision += 1
            _log_change(name, before, state)

    def summary(self, name: str, data_time: float | None = None) -> SourceSummary:
        """Source ``name`` now: its status and error, and how old its data is -- its last success,
        or ``data_time`` when the data in question is a snapshot fetched then."""
        state = self.sources[name]
        moment = state.last_success if data_time is None else data_time
        last = None if moment is None else iso_z(datetime.fromtimestamp(moment, timezone.utc))
        return SourceSummary(state.status, last, age_seconds(moment, self.clock()), state.error)

    def overall_status(self) -> str:
        enabled = [s for s in self.sources.values() if s.enabled]
        return "healthy" if all(s.status == "up" for s in enabled) else "degraded"

    @staticmethod
    def _observe(state: SourceState, seconds: float) -> None:
        state.last_refresh_seconds = seconds
        state.refresh_count += 1
        state.refresh_sum += seconds
        for i, bound in enumerate(REFRESH_BUCKETS):
            if seconds <= bound:
                state.refresh_bucket_counts[i] += 1


def _log_change(name: str, before: tuple[str, str | None] | None, state: SourceState) -> None:
    """Log a source's first outcome, and every change of state after it (up -> down with the
    error, down -> up); a source that stays down with the same error is not logged again."""
    if state.status == "up" and (before is None or before[0] != "up"):
        log.info("source %s is up", name)
    elif state.status == "down" and before != ("down", state.error):
        log.warning("source %s is down: %s", name, state.error)


def age_seconds(moment: float | None, now: float) -> float | None:
    """Whole seconds from ``moment`` to ``now`` (None without a moment). Both ends are on the
    second grid (:func:`second`), so every response within one second states the same ages and
    can be shared, and a success within the current second is age 0, never negative."""
    return None if moment is None else float(second(now) - second(moment))


def second(now: float) -> int:
    """The second holding the clock reading ``now``: the instant a response states its ages (and
    the dashboard its ``generated_at``) for."""
    return math.floor(now)


def describe_failure(error: Exception) -> str:
    """A message safe to publish: our own wording for known errors, the type name otherwise."""
    if isinstance(error, SourceError):
        return str(error)
    log.exception("unexpected error during refresh", exc_info=error)
    return f"internal error during refresh ({type(error).__name__}); see the service log"
