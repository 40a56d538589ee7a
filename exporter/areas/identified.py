"""Exact per-person counts from the identified events, for areas that belong to Plausible.

When the events source is configured, usage trends and feature adoption count people from it
(``basis: identified_users``) instead of Plausible's daily-salted visitors. Those areas are owned
by Plausible, so a failing events source must not take them down: the failure is recorded in the
events source's health, the area keeps Plausible's numbers (``basis: plausible_visitors``) and
adds the status code :data:`UNAVAILABLE`.

Counts cover ``[window start, now]``: a window of days ends at midnight tonight, and an event
stamped later than now (a producer's clock running ahead) is not activity yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable, Collection, TypeVar

from ..analysis.usage import UserCounts
from ..errors import SourceError
from ..events.backend import EventsBackend
from ..timeranges import ResolvedRange

if TYPE_CHECKING:
    from ..service import AnalyticsService

UNAVAILABLE = "identified_users_unavailable"
T = TypeVar("T")


async def identified_user_counts(service: "AnalyticsService", window: ResolvedRange
                                 ) -> tuple[UserCounts | None, list[str]]:
    """Users ever seen and users active in ``window``; None without a readable events source."""
    start, end = _bounds(service, window)
    meaningful = service.config.segments.meaningful_events
    return await _ask(service, lambda backend: backend.user_counts(start=start, end=end, meaningful_events=meaningful))


async def identified_feature_users(service: "AnalyticsService", window: ResolvedRange, events: Collection[str]
                                   ) -> tuple[dict[str, int] | None, list[str]]:
    """Distinct users per event name in ``window``; None without a readable events source."""
    start, end = _bounds(service, window)
    return await _ask(service, lambda backend: backend.feature_users(events, start=start, end=end))


async def identified_feature_dates(service: "AnalyticsService", events: Collection[str]
                                   ) -> tuple[dict[str, tuple[int, int] | None] | None, list[str]]:
    """First and last time of each event name up to now; None without a readable events source."""
    end = int(service.clock()) + 1
    return await _ask(service, lambda backend: backend.feature_dates(events, end=end))


async def _ask(service: "AnalyticsService", question: Callable[[EventsBackend], Awaitable[T]]
               ) -> tuple[T | None, list[str]]:
    if service.events is None:
        return None, []
    try:
        return await question(service.events), []
    except SourceError:
        return None, [UNAVAILABLE]  # the reason is in the events source's health


def _bounds(service: "AnalyticsService", window: ResolvedRange) -> tuple[int, int]:
    end = int(service.clock()) + 1  # exclusive: an event stamped exactly now counts
    return int(window.start.timestamp()), min(end, int(window.end.timestamp()))

