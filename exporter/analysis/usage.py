"""Usage trends from Plausible's answers: totals, zero-filled series and top lists (contract §4.2)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..timeranges import iso_z
from .numbers import finite_or_none


class UserCounts(NamedTuple):
    """Exact per-person counts from the identified events source."""

    total: int  # users ever seen
    active: int  # users active in the window


def series(points: Sequence, metric: str) -> list[dict]:
    """``[{"timestamp", "value"}]`` for every bucket, oldest first (points are already zero-filled)."""
    return [{"timestamp": iso_z(p.bucket), "value": p.values.get(metric, 0.0)} for p in points]


def top_list(rows: Sequence, *, limit: int) -> list[dict]:
    """``[{"name", "visitors", "pageviews"}]`` largest first; ``pageviews`` null where unknown."""
    items = [{"name": row.name, "visitors": int(row.metrics.get("visitors") or 0),
              "pageviews": None if row.metrics.get("pageviews") is None else int(row.metrics["pageviews"])}
             for row in rows]
    items.sort(key=lambda item: (-item["visitors"], item["name"]))
    return items[:limit]


def usage_trends(*, aggregate: dict, all_time: dict, current_visitors: int, points: Sequence,
                 pages: Sequence, traffic_sources: Sequence, approximation: str | None, top_n: int = 10,
                 identified_users: UserCounts | None = None) -> dict:
    """The usage-trends body.

    Without ``identified_users``, ``active_users`` is the window's unique visitors and
    ``total_users`` the all-time unique visitors, both as Plausible counts them: its visitor id
    rotates daily, so multi-day counts include returning people more than once. With them (from
    the events source) the two are exact per-person counts. ``basis`` says which; Plausible's
    own numbers stay in ``unique_visitors`` either way.
    """
    visitors = aggregate.get("visitors") or 0.0
    body = {
        "total_users": int(all_time.get("visitors") or 0),
        "active_users": int(visitors),
        "page_views": int(aggregate.get("pageviews") or 0),
        "unique_visitors": int(visitors),
        "visits": int(aggregate.get("visits") or 0),
        "avg_session_duration": finite_or_none(aggregate.get("visit_duration")),
        "bounce_rate": finite_or_none(aggregate.get("bounce_rate")),
        "views_per_visit": finite_or_none(aggregate.get("views_per_visit")),
        "current_visitors": int(current_visitors),
        "page_views_all_time": int(all_time.get("pageviews") or 0),
        "users_over_time": series(points, "visitors"),
        "pageviews_over_time": series(points, "pageviews"),
        "top_pages": top_list(pages, limit=top_n),
        "traffic_sources": top_list(traffic_sources, limit=top_n),
        "basis": "plausible_visitors",
        "status_codes": [],
    }
    if identified_users is not None:
        body.update(total_users=identified_users.total, active_users=identified_users.active,
                    basis="identified_users")
    if approximation:
        body["approximation"] = approximation
        body["status_codes"].append("approximated_range")
    return body
