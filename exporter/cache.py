"""The memo behind every upstream query and every analysed snapshot (docs/api.md#caching-and-freshness).

- A value is fresh for ``ttl`` seconds after it was fetched.
- Concurrent requests for a cold key share one load (single flight).
- Between ``ttl`` and ``hard_limit`` a caller gets the previous value at once, marked stale, and
  the first such caller starts a background refresh (stale-while-revalidate).
- Past ``hard_limit`` (2 x TTL) the value is dropped, never served.
- A failed load is never stored as data; the caller sees the exception (or the stale value, if
  any). For a short back-off after a failure (a tenth of the TTL, at most 30 s) the same error is
  answered without calling the upstream again, so a dead upstream is not hammered by every request.
- Whoever keeps something derived from the values (the live stream) is told of every change
  (:meth:`Memo.on_change`) instead of polling.

The clock is injectable so tests move time without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cached(Generic[T]):
    value: T
    fetched_at: float  # clock time the load finished
    stale: bool = False


class Memo:
    def __init__(self, ttl: float, *, clock: Clock = time.time, hard_limit_factor: float = 2.0) -> None:
        self.ttl = ttl
        self.hard_limit = ttl * hard_limit_factor
        self.clock = clock
        self._entries: dict[Hashable, Cached[Any]] = {}
        self._loading: dict[Hashable, asyncio.Task[Cached[Any]]] = {}
        self.failure_backoff = min(ttl / 10.0, 30.0)
        self._failures: dict[Hashable, tuple[float, BaseException]] = {}
        # Bumped whenever a value is stored or dropped: with next_change_at(), it tells a reader
        # that caches something derived from the values (a rendered response) whether it still holds.
        self.revision = 0
        self._listeners: list[Callable[[], None]] = []

    async def get(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> Cached[T]:
        """The value for ``key``: fresh, stale-while-revalidating, or loaded now."""
        entry = self.peek(key)
        if entry is not None and not entry.stale:
            return entry
        failure = self._recent_failure(key)
        if failure is not None:
            if entry is not None:
                return entry
            raise failure
        task = self._start_load(key, loader)
        if entry is not None:  # serve the stale value; the refresh continues in the background
            return entry
        return await asyncio.shield(task)

    async def refresh(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> Cached[T]:
        """Load now, even if fresh (joins a load already under way)."""
        return await asyncio.shield(self._start_load(key, loader))

    def peek(self, key: Hashable) -> Cached[Any] | None:
        """The value without loading: ``None`` when absent or past the hard limit."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self.clock() - entry.fetched_at
        if age >= self.hard_limit:
            del self._entries[key]
            self._changed()
            return None
        return Cached(entry.value, entry.fetched_at, stale=age >= self.ttl)

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` whenever a value is stored or dropped (it must not block: it runs
        inside the memo's own calls); returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        self.revision += 1
        for listener in list(self._listeners):
            listener()

    def keys(self) -> set[Hashable]:
        """The keys held (some may be past the hard limit until the next store drops them)."""
        return set(self._entries)

    def _forget_expired(self) -> None:
        """Drop every value past the hard limit: keys nobody asks for again (a one-off query's
        parameters) must not be kept for the life of the process."""
        now = self.clock()
        for key in [key for key, entry in self._entries.items() if now - entry.fetched_at >= self.hard_limit]:
            del self._entries[key]
        for key in [key for key, (failed_at, _) in self._failures.items() if now - failed_at >= self.failure_backoff]:
            del self._failures[key]

    def next_change_at(self) -> float:
        """The earliest clock time at which a value held now turns stale or is dropped (inf: none).

        Until then, and while :attr:`revision` stays the same, every ``peek`` answers as it does now.
        """
        now = self.clock()
        return min((entry.fetched_at + (self.ttl if now - entry.fetched_at < self.ttl else self.hard_limit)
                    for entry in self._entries.values()), default=math.inf)

    def _recent_failure(self, key: Hashable) -> BaseException | None:
        failed = self._failures.get(key)
        if failed is None or self.clock() - failed[0] >= self.failure_backoff:
            return None
        return failed[1]

    def loading(self, key: Hashable) -> asyncio.Task[Cached[Any]] | None:
        """The load under way for ``key``, if any (for callers that wait with a deadline)."""
        return self._loading.get(key)

    def in_flight(self) -> list[asyncio.Task[Cached[Any]]]:
        """Every load under way (for callers that wait for quiet, or end the loads at shutdown)."""
        return list(self._loading.values())

    def _start_load(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> asyncio.Task[Cached[T]]:
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, loader))
            self._loading[key] = task
            task.add_done_callback(_consume_exception)
        return task

    async def _load(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> Cached[T]:
        try:
            value = await loader()
        except Exception as error:
            self._failures[key] = (self.clock(), error)
            raise
        else:
            entry = Cached(value, self.clock())
            self._forget_expired()
            self._entries[key] = entry
            self._failures.pop(key, None)
            self._changed()
            return entry
        finally:
            self._loading.pop(key, None)


def _consume_exception(task: asyncio.Task[Any]) -> None:
    # A background refresh that fails has already marked its source down; nobody awaits it, so
    # read the exception here to keep asyncio from logging "exception was never retrieved".
    if not task.cancelled() and task.exception() is not None:
        log.debug("background refresh failed: %s", task.exception())
