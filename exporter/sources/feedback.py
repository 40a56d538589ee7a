"""The Feedback Service (docs/upstreams.md#feedback-service): admin-token reads of the feedback list and its totals.

The list has no date filter and is sorted newest first, so a window is read by paging until the
first item older than the window's start. Items are reduced to :class:`FeedbackItem` as they
arrive: email, comment, page URL, browser and every other personal or free-text field are dropped
here and never reach the analysis, the JSON API or a metric label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..config import FeedbackConfig
from ..health import HealthRegistry
from .http import ClientSettings, HttpFailure, UpstreamClient

SOURCE = "feedback"
PAGE_SIZE = 100  # the upstream's maximum (FastAPI answers 422 above it)
# A runaway walk (an upstream that ignores paging) stops here: 50,000 items is far beyond any window.
MAX_PAGES = 500
TEXT_FIELDS = ("category", "feedback_type", "status", "sentiment")


@dataclass(frozen=True)
class FeedbackItem:
    """One feedback entry, reduced to the fields the summary needs (no comment, no email)."""

    rating: int
    category: str | None
    feedback_type: str | None
    status: str | None
    sentiment: str | None
    sentiment_compound: float | None
    created_at: datetime  # timezone-aware UTC

    def __post_init__(self) -> None:
        # The upstream sends naive UTC; converting is this module's job, and a naive value here
        # would make every window comparison downstream raise or silently shift.
        if self.created_at.utcoffset() != timedelta(0):
            raise ValueError("created_at must be timezone-aware UTC")


@dataclass(frozen=True)
class FeedbackWindow:
    """The items created at or after a window's start, newest first."""

    items: list[FeedbackItem]
    skipped: int  # malformed items left out (wrong types, unreadable timestamp)
    complete: bool  # False when MAX_PAGES ran out before the window's start was reached


class FeedbackClient(UpstreamClient):
    def __init__(self, config: FeedbackConfig, health: HealthRegistry) -> None:
        super().__init__(SOURCE, ClientSettings.from_config(config), health, bearer=config.admin_token)

    async def items_since(self, start: datetime) -> FeedbackWindow:
        """Every item created at or after ``start`` (tz-aware): pages of 100 until one is older.

        A submission arriving mid-walk shifts the list by one, so an item can show up again at
        the top of the next page; items are de-duplicated by id. Malformed items are skipped and
        counted, but a page on which no item can be read is an invalid response.
        """
        items: list[FeedbackItem] = []
        seen: set[int | str] = set()
        skipped = 0
        for page in range(1, MAX_PAGES + 1):
            raw_items, total = self._page(await self.request_json(
                "GET", "api/v1/feedback", params={"page": str(page), "page_size": str(PAGE_SIZE)}))
            readable = unreadable = 0
            for raw in raw_items:
                item_id = raw.get("id") if isinstance(raw, dict) else None
                if isinstance(item_id, int | str):
                    if item_id in seen:
                        continue
                    seen.add(item_id)
                item = parse_item(raw)
                if item is None:
                    unreadable += 1
                    continue
                readable += 1
                if item.created_at < start:
                    return FeedbackWindow(items, skipped + unreadable, complete=True)
                items.append(item)
            if unreadable and not readable:
                # One odd item is skipped; a page of nothing but odd items is a format this client
                # does not speak, and summarising it as "no feedback" would be a lie.
                raise self.error(f"unexpected response shape: none of the {unreadable} items on page {page} "
                                 "could be read", code="invalid_response")
            skipped += unreadable
            if len(raw_items) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                return FeedbackWindow(items, skipped, complete=True)
        return FeedbackWindow(items, skipped, complete=False)

    async def status_counts(self) -> dict[str, int]:
        """Items by status, whenever they were submitted (the all-time ``/stats``)."""
        data = await self.request_json("GET", "api/v1/feedback/stats")
        by_status = data.get("by_status") if isinstance(data, dict) else None
        if not isinstance(by_status, dict) or not all(_is_count(n) for n in by_status.values()):
            raise self.error("unexpected response shape: 'by_status' is missing or not a mapping of counts",
                             code="invalid_response")
        return {str(status): int(count) for status, count in by_status.items()}

    def _page(self, data: Any) -> tuple[list, int | None]:
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise self.error("unexpected response shape: 'items' is missing or not a list", code="invalid_response")
        total = data.get("total")
        return data["items"], total if _is_count(total) else None

    def describe_failure(self, failure: HttpFailure) -> str:
        if failure.status == 401:
            return ("HTTP 401: the Feedback Service wants an admin bearer token; "
                    "set sources.feedback.admin_token (FEEDBACK_ADMIN_TOKEN)")
        if failure.status == 403:
            return ("HTTP 403: the Feedback Service rejected the admin token; check sources.feedback.admin_token "
                    "(FEEDBACK_ADMIN_TOKEN): it is wrong or was rotated")
        if failure.status == 503:
            return "HTTP 503: the Feedback Service is unavailable (it answers so while its database is down)"
        return super().describe_failure(failure)


def parse_item(raw: Any) -> FeedbackItem | None:
    """The fields the summary needs, or ``None`` when the item is malformed.

    Timestamps are naive UTC upstream (an explicit offset is honoured too). Ratings outside 1..5
    are kept: the summary counts them as invalid ratings rather than losing the item.
    """
    if not isinstance(raw, dict):
        return None
    rating, compound = raw.get("rating"), raw.get("sentiment_compound")
    created_at = _utc(raw.get("created_at"))
    texts = {name: raw.get(name) for name in TEXT_FIELDS}
    if (not _is_int(rating) or created_at is None
            or any(value is not None and not isinstance(value, str) for value in texts.values())
            or (compound is not None and not _is_number(compound))):
        return None
    return FeedbackItem(rating=rating, created_at=created_at,
                        sentiment_compound=None if compound is None else float(compound), **texts)


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0
