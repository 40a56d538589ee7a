"""Summary of user feedback over a window (docs/methods.md#feedback, docs/api.md#feedback).

Callers window the items; this module only summarises what it is given. The item type carries no
comment, email or other free-text personal data, so none can leak into the output.

Decisions the spec leaves open:

* ``total`` counts every item. Ratings outside 1..5 are excluded from every rating-based figure
  (average, distribution, CSAT, ``nps_5star``, per-category average) and counted in
  ``invalid_ratings``; the item still counts towards categories, types, sentiment and open items.
* ``open_items_in_window`` counts the window's items with status ``open`` or ``in_progress``: both
  are feedback nobody has closed. (The backlog of every open item, whenever submitted, is the
  area's ``open_items``.)
* Categories are free text, so ``by_category`` keeps the ``top_categories`` largest and folds the
  rest into ``"other"`` (always last). A category literally called "Other" (any case; the portal
  widget offers one) means the same thing and is folded into that bucket rather than shown twice.
  Category names are compared after trimming surrounding whitespace; missing or blank ones are
  reported as ``"uncategorised"``, missing types as ``"unknown"``.
* Sentiment labels other than positive/neutral/negative (or none) count as ``unknown``.
* ``status_codes`` says why a number is ``null``: ``no_ratings`` (no valid rating, so average,
  CSAT and ``nps_5star.score`` are null) and ``no_sentiment_scores`` (no compound score).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from exporter.analysis.intervals import wilson_interval
from exporter.analysis.numbers import finite_or_none, safe_ratio
from exporter.results import COUNT, FRACTION, STARS, Timestamp, Unit, declare, status_codes

RATINGS = (1, 2, 3, 4, 5)
SENTIMENT_LABELS = ("positive", "neutral", "negative")
OPEN_STATUSES = frozenset({"open", "in_progress"})
OTHER_CATEGORY = "other"
UNCATEGORISED = "uncategorised"
UNKNOWN = "unknown"


class FeedbackItem(Protocol):
    """One feedback entry as the summary reads it (the source's records have these fields)."""

    rating: int
    category: str | None
    feedback_type: str | None
    status: str | None
    sentiment: str | None
    sentiment_compound: float | None


def open_item_count(by_status: Mapping[str, int]) -> int:
    """Items nobody has closed (open or in progress), from counts by status."""
    return sum(by_status.get(status, 0) for status in OPEN_STATUSES)


def cap_categories(counts: Mapping[str, int], top_n: int) -> dict[str, int]:
    """The ``top_n`` largest categories, then ``"other"`` holding the rest.

    Order is largest first, ties broken by name, with ``"other"`` last and present only when it
    holds something. Input keys equal to "other" in any case are folded into that bucket.
    """
    if top_n < 0:
        raise ValueError("top_n must not be negative")
    ranked = sorted(
        ((name, count) for name, count in counts.items() if name.casefold() != OTHER_CATEGORY),
        key=lambda entry: (-entry[1], entry[0]),
    )
    capped = dict(ranked[:top_n])
    overflow = sum(counts.values()) - sum(capped.values())
    if overflow:
        capped[OTHER_CATEGORY] = overflow
    return capped


@dataclass(frozen=True)
class NpsFiveStar:
    """The platform's 5-star "NPS": promoters 5, passives 4, detractors 1-3 (not a 0-10 NPS)."""

    score: float | None = declare("100 x (promoters - detractors) / rated, -100..100", Unit("score", -100, 100))
    promoters: int = declare("5-star ratings", COUNT)
    passives: int = declare("4-star ratings", COUNT)
    detractors: int = declare("1-3 star ratings", COUNT)


@dataclass(frozen=True)
class Sentiment:
    """Sentiment of the window's feedback."""

    average_compound: float | None = declare("mean compound score, -1..1", Unit("score", -1, 1))
    positive: int = declare("items labelled positive", COUNT)
    neutral: int = declare("items labelled neutral", COUNT)
    negative: int = declare("items labelled negative", COUNT)
    unknown: int = declare("items with another label or none", COUNT)


@dataclass(frozen=True)
class CategoryRow:
    """One category of feedback (the largest ones, then ``other``)."""

    category: str = declare("the category as written, trimmed", key=True)
    count: int = declare("items in the category", COUNT)
    average_rating: float | None = declare("mean rating of the category's items", STARS)


@dataclass(frozen=True)
class FeedbackSummary:
    """Satisfaction, sentiment and open items of the feedback in the window."""

    total: int = declare("items in the window", COUNT)
    invalid_ratings: int = declare("items whose rating is outside 1..5 (left out of every rating figure)", COUNT)
    average_rating: float | None = declare("mean rating", STARS)
    rating_distribution: dict[str, int] = declare("responses per star rating, 1 to 5", COUNT)
    csat: float | None = declare("share of 4-5 star ratings", FRACTION)
    csat_ci: tuple[float, float] | None = declare("Wilson 95% interval of csat", FRACTION)
    nps_5star: NpsFiveStar = declare("the platform's 5-star NPS")
    sentiment: Sentiment = declare("sentiment labels and scores")
    by_category: tuple[CategoryRow, ...] = declare("top categories by volume, then 'other'")
    by_type: dict[str, int] = declare("responses per feedback type, largest first", COUNT)
    open_items_in_window: int = declare("items submitted in the window that are still open or in progress", COUNT)
    status_codes: tuple[str, ...] = status_codes()
    window_start: Timestamp | None = declare("start of the window (UTC calendar days)", omit_if_none=True)
    open_items: int | None = declare("every item still open or in progress, whenever submitted (the backlog)",
                                     COUNT, omit_if_none=True)
    skipped_items: int | None = declare("malformed items skipped", COUNT, omit_if_none=True)


def summarise_feedback(items: Sequence[FeedbackItem], *, top_categories: int = 8) -> FeedbackSummary:
    """The summary of already-windowed feedback items (docs/methods.md#feedback).

    CSAT is the share of 4-5★ with a Wilson 95% interval; ``nps_5star`` is the platform's
    5★-scale score, 100 x (5★ - 1..3★) / rated, not a 0-10 NPS. The caller adds the window's
    start, the backlog of open items and the items it had to skip.
    """
    ratings = [item.rating for item in items if item.rating in RATINGS]
    stars = Counter(ratings)
    rated = len(ratings)
    promoters, passives = stars[5], stars[4]
    detractors = rated - promoters - passives
    satisfied = promoters + passives

    compounds = [
        score
        for score in (finite_or_none(item.sentiment_compound) for item in items)
        if score is not None
    ]
    sentiment_labels = Counter(
        item.sentiment if item.sentiment in SENTIMENT_LABELS else UNKNOWN for item in items
    )
    status_codes: list[str] = []
    if not rated:
        status_codes.append("no_ratings")
    if not compounds:
        status_codes.append("no_sentiment_scores")

    return FeedbackSummary(
        total=len(items),
        invalid_ratings=len(items) - rated,
        average_rating=_mean(ratings),
        rating_distribution={str(star): stars[star] for star in RATINGS},
        csat=safe_ratio(satisfied, rated),
        csat_ci=tuple(wilson_interval(satisfied, rated)) if rated else None,
        nps_5star=NpsFiveStar(safe_ratio(100 * (promoters - detractors), rated), promoters, passives, detractors),
        sentiment=Sentiment(_mean(compounds), *(sentiment_labels[label] for label in (*SENTIMENT_LABELS, UNKNOWN))),
        by_category=_category_rows(items, top_categories),
        by_type=_largest_first(Counter(item.feedback_type or UNKNOWN for item in items)),
        open_items_in_window=sum(item.status in OPEN_STATUSES for item in items),
        status_codes=tuple(status_codes),
    )


def _category_rows(items: Sequence[FeedbackItem], top_n: int) -> tuple[CategoryRow, ...]:
    labels = [(item.category or "").strip() or UNCATEGORISED for item in items]
    capped = cap_categories(Counter(labels), top_n)
    ratings_by_bucket: dict[str, list[int]] = {name: [] for name in capped}
    for label, item in zip(labels, items):
        if item.rating in RATINGS:
            # Anything cap_categories did not keep by name sits in the "other" bucket.
            ratings_by_bucket[label if label in capped else OTHER_CATEGORY].append(item.rating)
    return tuple(CategoryRow(name, count, _mean(ratings_by_bucket[name])) for name, count in capped.items())


def _largest_first(counts: Counter) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda entry: (-entry[1], entry[0])))


def _mean(values: Sequence[float]) -> float | None:
    return safe_ratio(sum(values), len(values))
