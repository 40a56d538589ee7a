"""Usage trends from Plausible's answers: totals, zero-filled series and top lists (docs/api.md#usage-trends)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

from ..results import COUNT, NUMBER, PERCENT, SECONDS, USERS, Point, declare, status_codes
from ..timeranges import iso_z
from .numbers import finite_or_none

Basis = Literal["identified_users", "plausible_visitors"]
APPROXIMATED = "approximated_range"


@dataclass(frozen=True)
class UserCounts:
    """Exact per-person counts from the identified events source, of the users a selection keeps;
    with a breakdown, ``by_value`` has (total, active) per value of the dimension."""

    total: int  # users ever seen
    active: int  # users active in the window
    by_value: dict[str, tuple[int, int]] | None = None


class DailyUsers(NamedTuple):
    """Distinct users per UTC day from the identified events source, oldest day first (the daily
    series that are forecast, docs/forecasting.md#the-series)."""

    active: tuple[int, ...]  # users with a meaningful event that day
    by_event: dict[str, tuple[int, ...]]  # users with each asked-for event name that day

    @classmethod
    def of(cls, counts: Sequence[Sequence[int]], names: Sequence[str]) -> DailyUsers:
        """From a days x (1 + names) table: active users first, then each name's users."""
        columns = [tuple(int(row[slot]) for row in counts) for slot in range(len(names) + 1)]
        return cls(columns[0], dict(zip(names, columns[1:])))


@dataclass(frozen=True)
class TopItem:
    """A page or a traffic source with its visitors."""

    name: str = declare("the page path or the source's name", key=True)
    visitors: int = declare("unique visitors", USERS)
    pageviews: int | None = declare("pageviews (null where Plausible does not report them)", COUNT)


@dataclass(frozen=True)
class UsageTrends:
    """Who is active and what they look at, in the window."""

    total_users: int = declare("users ever seen (see basis)", USERS)
    active_users: int = declare("users active in the window (see basis)", USERS)
    page_views: int = declare("pageviews in the window", COUNT)
    unique_visitors: int = declare("Plausible's unique visitors (its visitor id rotates daily)", USERS)
    visits: int = declare("visits (sessions) in the window", COUNT)
    avg_session_duration: float | None = declare("mean visit duration", SECONDS)
    bounce_rate: float | None = declare("share of single-page visits, percent 0..100 as Plausible reports it",
                                        PERCENT)
    views_per_visit: float | None = declare("pageviews per visit", NUMBER)
    current_visitors: int = declare("visitors in the last 5 minutes", USERS)
    page_views_all_time: int = declare("pageviews since the site's stats start", COUNT)
    users_over_time: tuple[Point, ...] = declare("unique visitors per bucket (hour or day)", USERS)
    pageviews_over_time: tuple[Point, ...] = declare("pageviews per bucket (hour or day)", COUNT)
    top_pages: tuple[TopItem, ...] = declare("largest first")
    traffic_sources: tuple[TopItem, ...] = declare("largest first")
    basis: Basis = declare("where total_users and active_users come from")
    status_codes: tuple[str, ...] = status_codes()
    approximation: str | None = declare("how the figures are approximated (status approximated_range)",
                                        omit_if_none=True)


def series(points: Sequence, metric: str) -> tuple[Point, ...]:
    """A point for every bucket, oldest first (points are already zero-filled)."""
    return tuple(Point(iso_z(p.bucket), p.values.get(metric, 0.0)) for p in points)


def top_list(rows: Sequence, *, limit: int) -> tuple[TopItem, ...]:
    """The ``limit`` largest rows, largest first; ``pageviews`` null where unknown."""
    items = [TopItem(row.name, int(row.metrics.get("visitors") or 0),
                     None if row.metrics.get("pageviews") is None else int(row.metrics["pageviews"]))
             for row in rows]
    items.sort(key=lambda item: (-item.visitors, item.name))
    return tuple(items[:limit])


def usage_trends(*, aggregate: dict, all_time: dict, current_visitors: int, points: Sequence,
                 pages: Sequence, traffic_sources: Sequence, approximation: str | None, top_n: int = 10,
                 identified_users: UserCounts | None = None, codes: Sequence[str] = ()) -> UsageTrends:
    """The usage-trends body.

    Without ``identified_users``, ``active_users`` is the window's unique visitors and
    ``total_users`` the all-time unique visitors, both as Plausible counts them: its visitor id
    rotates daily, so multi-day counts include returning people more than once. With them (from
    the events source) the two are exact per-person counts. ``basis`` says which; Plausible's
    own numbers stay in ``unique_visitors`` either way. ``codes`` are further status codes.
    """
    visitors = int(aggregate.get("visitors") or 0.0)
    total, active, basis = int(all_time.get("visitors") or 0), visitors, "plausible_visitors"
    if identified_users is not None:
        total, active, basis = identified_users.total, identified_users.active, "identified_users"
    return UsageTrends(
        total_users=total,
        active_users=active,
        page_views=int(aggregate.get("pageviews") or 0),
        unique_visitors=visitors,
        visits=int(aggregate.get("visits") or 0),
        avg_session_duration=finite_or_none(aggregate.get("visit_duration")),
        bounce_rate=finite_or_none(aggregate.get("bounce_rate")),
        views_per_visit=finite_or_none(aggregate.get("views_per_visit")),
        current_visitors=int(current_visitors),
        page_views_all_time=int(all_time.get("pageviews") or 0),
        users_over_time=series(points, "visitors"),
        pageviews_over_time=series(points, "pageviews"),
        top_pages=top_list(pages, limit=top_n),
        traffic_sources=top_list(traffic_sources, limit=top_n),
        basis=basis,
        status_codes=(*(APPROXIMATED,) * bool(approximation), *codes),
        approximation=approximation or None,
    )
