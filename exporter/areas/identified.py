"""Exact per-person counts from the identified events, for areas that belong to Plausible.

When the events source is configured, usage trends and feature adoption count people from it
(``basis: identified_users``) instead of Plausible's daily-salted visitors. Those areas are owned
by Plausible, so a failing events source must not take them down: the failure is recorded in the
events source's health, the area keeps Plausible's numbers (``basis: plausible_visitors``) and
adds the status code :data:`UNAVAILABLE`. A question about selected users (filters, a breakdown)
has no Plausible answer, so its failure is the section's.

Counts cover ``[window start, now]``: a window of days ends at midnight tonight, and an event
stamped later than now (a producer's clock running ahead) is not activity yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from ..analysis.adoption import FeatureUsers
from ..analysis.breakdowns import EVERYONE, Selection
from ..analysis.usage import UserCounts
from ..errors import SourceError
from ..events.backend import EventsBackend
from ..timeranges import ResolvedRange

UNAVAILABLE = "identified_users_unavailable"
T = TypeVar("T")
Answer = tuple[T | None, list[str]]  # the answer (None without a readable events source) and status codes


class IdentifiedUsers:
    """The questions Plausible's areas ask the identified events, when there are any."""

    def __init__(self, events: EventsBackend | None, clock: Callable[[], float],
                 meaningful_events: Collection[str] | None) -> None:
        self.events = events
        self._clock = clock
        self._meaningful = meaningful_events

    @property
    def available(self) -> bool:
        return self.events is not None

    async def user_counts(self, window: ResolvedRange, selection: Selection = EVERYONE) -> Answer[UserCounts]:
        """Users ever seen and users active in ``window``, of those ``selection`` keeps."""
        start, end = self._bounds(window)
        return await self._ask(lambda events: events.user_counts(
            start=start, end=end, meaningful_events=self._meaningful, selection=selection),
            required=selection != EVERYONE)

    async def feature_users(self, window: ResolvedRange, names: Collection[str],
                            selection: Selection = EVERYONE) -> Answer[FeatureUsers]:
        """Distinct users per event name in ``window``, of those ``selection`` keeps."""
        start, end = self._bounds(window)
        return await self._ask(lambda events: events.feature_users(names, start=start, end=end, selection=selection),
                               required=selection != EVERYONE)

    async def feature_dates(self, names: Collection[str]) -> Answer[dict[str, tuple[int, int] | None]]:
        """First and last time of each event name up to now."""
        end = int(self._clock()) + 1
        return await self._ask(lambda events: events.feature_dates(names, end=end))

    async def _ask(self, question: Callable[[EventsBackend], Awaitable[T]], *, required: bool = False) -> Answer[T]:
        if self.events is None:
            return None, []
        try:
            return await question(self.events), []
        except SourceError:
            if required:
                raise
            return None, [UNAVAILABLE]  # the reason is in the events source's health

    def _bounds(self, window: ResolvedRange) -> tuple[int, int]:
        end = int(self._clock()) + 1  # exclusive: an event stamped exactly now counts
        return int(window.start.timestamp()), min(end, int(window.end.timestamp()))
