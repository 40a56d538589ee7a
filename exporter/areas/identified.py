"""Exact per-person counts from the identified events, for areas that belong to Plausible.

When the events source is configured, usage trends and feature adoption count people from it
(``basis: identified_users``) instead of Plausible's daily-salted visitors. Those areas are owned
by Plausible, so a failing events file must not take them down: the failure is recorded in the
events source's health, the area keeps Plausible's numbers (``basis: plausible_visitors``) and
adds the status code :data:`UNAVAILABLE`.

Counts cover ``[window start, now]``: a window of days ends at midnight tonight, and an event
stamped later than now (a producer's clock running ahead) is not activity yet.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Collection

from ..analysis.segments import active_user_count, feature_unique_users, total_user_count
from ..analysis.usage import UserCounts
from ..errors import SourceError
from ..events.log import EventLog
from ..timeranges import ResolvedRange

if TYPE_CHECKING:
    from ..service import AnalyticsService

UNAVAILABLE = "identified_users_unavailable"


async def identified_user_counts(service: "AnalyticsService", window: ResolvedRange
                                 ) -> tuple[UserCounts | None, list[str]]:
    """Users ever seen and users active in ``window``; None without a readable events source."""
    log, codes = await _readable_log(service)
    if log is None:
        return None, codes
    start, end = _bounds(service, window)
    meaningful = service.config.segments.meaningful_events
    counts = await asyncio.to_thread(_user_counts, log, start, end, meaningful)
    return counts, codes


async def identified_feature_users(service: "AnalyticsService", window: ResolvedRange, events: Collection[str]
                                   ) -> tuple[dict[str, int] | None, list[str]]:
    """Distinct users per event name in ``window``; None without a readable events source."""
    log, codes = await _readable_log(service)
    if log is None:
        return None, codes
    start, end = _bounds(service, window)
    return await asyncio.to_thread(feature_unique_users, log, events, start, end), codes


async def _readable_log(service: "AnalyticsService") -> tuple[EventLog | None, list[str]]:
    if service.events is None:
        return None, []
    try:
        snapshot = await service.events.read()
    except SourceError:
        return None, [UNAVAILABLE]  # the reason is in the events source's health
    return snapshot.log, []


def _bounds(service: "AnalyticsService", window: ResolvedRange) -> tuple[int, int]:
    end = int(service.clock()) + 1  # exclusive: an event stamped exactly now counts
    return int(window.start.timestamp()), min(end, int(window.end.timestamp()))


def _user_counts(log: EventLog, start: int, end: int, meaningful: Collection[str] | None) -> UserCounts:
    return UserCounts(total=total_user_count(log, end),
                      active=active_user_count(log, start, end, meaningful_events=meaningful))
