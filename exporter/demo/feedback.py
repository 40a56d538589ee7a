"""Simulated Feedback Service for demo mode (docs/upstreams.md#feedback-service).

A real aiohttp server speaking the upstream's HTTP contract: ``/health``; the admin-only list
(newest first, ``page``/``page_size`` with FastAPI's 422 above 100, exact ``status`` and
``category`` filters) and all-time ``/stats``; bearer-token checks with the upstream's 401 and
403 bodies, in the upstream's order (authentication before parameter validation).

The data is a few hundred feedback items over the 90 days before ``now``: mostly from the portal
widget's six categories, some from the chat bot with free-text categories (so label capping
matters), ratings whose average drifts upward with a dip during a past performance incident,
and sentiment scores that agree with the rating. Rows older than the sentiment feature have
NULL sentiment, as in a real database that gained the column later. Submissions keep arriving
after ``now``; the injectable ``clock`` decides how many are visible.
"""

from __future__ import annotations

import bisect
import hmac
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from exporter.demo.fastapi_emulation import (
    IntQuery,
    fastapi_json_response,
    naive_utc_iso,
    optional_text_query,
    platform_service_middlewares,
    read_int_queries,
    simulated_clock,
)

HISTORY = timedelta(days=90)
# Submissions simulated after ``now``, revealed as the clock advances.
FUTURE = timedelta(days=30)
WEEKDAY_SUBMISSIONS_PER_DAY = 5.0
WEEKEND_FACTOR = 0.35
# Sentiment analysis shipped this long before ``now``; older rows have NULL sentiment.
SENTIMENT_SHIPPED = timedelta(days=75)
# A slow week for the catalog: Performance ratings drop between these ages.
INCIDENT = (timedelta(days=45), timedelta(days=38))

PORTAL = "https://backstage.fawkes.idp"
WIDGET_CATEGORIES: dict[str, float] = {
    "UI/UX": 0.22, "Performance": 0.17, "Documentation": 0.22,
    "Features": 0.17, "Bug Report": 0.14, "Other": 0.08,
}
# What the chat bot files under: free text, many rare values.
CHATBOT_CATEGORIES = (
    "Deployment", "Onboarding", "CI/CD", "Access Request", "Kubernetes", "Cost",
    "Security", "Golden Paths", "Search", "Observability", "Secrets", "Incident Response",
)
CHATBOT_SHARE = 0.1
CHATBOT_USER_AGENT = "fawkes-feedback-bot/1.3 (Mattermost)"

# Relative to the overall mean; Bug Report and Performance feedback skews negative.
CATEGORY_RATING_OFFSET = {"Bug Report": -0.9, "Performance": -0.5, "Features": 0.2, "UI/UX": 0.1}
SUBJECTS: dict[str, tuple[str, ...]] = {
    "UI/UX": ("the new navigation", "the catalog table layout", "dark mode", "the entity tabs"),
    "Performance": ("catalog page load time", "TechDocs rendering", "search", "the scaffolder"),
    "Documentation": ("TechDocs search", "the getting-started guide", "the API reference",
                      "the golden path docs"),
    "Features": ("the software templates", "the cost insights panel", "the Kubernetes plugin",
                 "scorecards"),
    "Bug Report": ("the scaffolder form", "the CI/CD tab", "the login redirect",
                   "entity refresh"),
    "Other": ("the portal", "the onboarding session", "platform support", "the newsletter"),
}
PAGES: dict[str, tuple[str, ...]] = {
    "UI/UX": ("/catalog", "/explore", "/settings"),
    "Performance": ("/catalog", "/docs", "/create"),
    "Documentation": ("/docs", "/docs/default/component/golden-paths", "/api-docs"),
    "Features": ("/create", "/catalog", "/cost-insights"),
    "Bug Report": ("/create", "/ci-cd", "/catalog"),
    "Other": ("/", "/home"),
}
COMMENT_FRAMES: dict[str, tuple[str, ...]] = {
    "positive": ("{Subject} is great, saved me a lot of time.", "Really happy with {subject}.",
                 "{Subject} works well now, thanks!", "Love {subject}."),
    "neutral": ("{Subject} works but is slow.", "{Subject} is fine, could be clearer.",
                "Mixed feelings about {subject}.", "{Subject} is okay for now."),
    "negative": ("{Subject} is broken again.", "Frustrated with {subject}, it keeps failing.",
                 "{Subject} is confusing and slow.", "Could not get {subject} to work."),
}
# VADER-like compound scores for each rating; every band sits on its rating's side of zero.
COMPOUND_BANDS = {1: (-0.95, -0.5), 2: (-0.6, -0.1), 3: (-0.25, 0.3), 4: (0.2, 0.75),
                  5: (0.55, 0.97)}
BROWSERS: tuple[tuple[str, str, float], ...] = (
    ("Chrome 120", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/120.0.0.0 Safari/537.36", 0.55),
    ("Firefox 121", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
     0.2),
    ("Safari 17.2", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 "
                    "(KHTML, like Gecko) Version/17.2 Safari/605.1.15", 0.15),
    ("Edge 120", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                 "Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0", 0.1),
)
ISSUE_TRACKER = "https://github.com/example-org/platform-feedback/issues"


@dataclass(frozen=True)
class FeedbackRecord:
    """One row of the upstream's ``feedback`` table, as its API exposes it."""

    id: int
    rating: int
    category: str
    comment: str
    email: str | None
    page_url: str | None
    status: str
    sentiment: str | None
    sentiment_compound: float | None
    feedback_type: str
    browser_info: str | None
    user_agent: str | None
    has_screenshot: bool
    github_issue_url: str | None
    created_at: datetime
    updated_at: datetime

    def as_upstream_json(self) -> dict[str, Any]:
        """The item as ``GET /api/v1/feedback`` lists it (naive UTC timestamps)."""
        return {
            "id": self.id, "rating": self.rating, "category": self.category,
            "comment": self.comment, "email": self.email, "page_url": self.page_url,
            "status": self.status, "sentiment": self.sentiment,
            "sentiment_compound": self.sentiment_compound, "feedback_type": self.feedback_type,
            "browser_info": self.browser_info, "user_agent": self.user_agent,
            "has_screenshot": self.has_screenshot, "github_issue_url": self.github_issue_url,
            "created_at": naive_utc_iso(self.created_at),
            "updated_at": naive_utc_iso(self.updated_at),
        }


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------

def _submission_times(rng: random.Random, now: datetime) -> list[datetime]:
    """Arrival times from ``now - HISTORY`` to ``now + FUTURE``, quieter at weekends, sorted.

    A Poisson process at the weekday rate, thinned at weekends.
    """
    moment, end = now - HISTORY, now + FUTURE
    per_second = WEEKDAY_SUBMISSIONS_PER_DAY / 86400
    times = []
    while (moment := moment + timedelta(seconds=rng.expovariate(per_second))) <= end:
        if rng.random() < (WEEKEND_FACTOR if moment.weekday() >= 5 else 1.0):
            times.append(moment)
    return times


def _rating(rng: random.Random, category: str, created: datetime, now: datetime) -> int:
    """Satisfaction improves by about 0.7 stars over the history; incidents dent it."""
    age = now - created
    progress = min(1.0, max(0.0, 1 - age / HISTORY))
    latent = 3.5 + 0.7 * progress + CATEGORY_RATING_OFFSET.get(category, 0.0)
    if category == "Performance" and INCIDENT[1] <= age <= INCIDENT[0]:
        latent -= 1.2
    return min(5, max(1, round(latent + rng.gauss(0, 1.0))))


def _sentiment(compound: float) -> str:
    """The upstream's VADER classification thresholds."""
    if compound >= 0.05:
        return "positive"
    if compound <= -0.05:
        return "negative"
    return "neutral"


def _comment(rng: random.Random, category: str, rating: int) -> str:
    # Chat-bot categories are free text; the category itself is what the comment is about.
    subject = rng.choice(SUBJECTS.get(category, (category,)))
    tone = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
    frame = rng.choice(COMMENT_FRAMES[tone])
    return frame.format(subject=subject, Subject=subject[0].upper() + subject[1:])


def _feedback_type(rng: random.Random, category: str) -> str:
    if category == "Bug Report":
        return "bug_report"
    if category == "Features" and rng.random() < 0.8:
        return "feature_request"
    if category == "Performance" and rng.random() < 0.2:
        return "bug_report"
    return "feedback"


def _triage(rng: random.Random, age: timedelta) -> tuple[str, timedelta]:
    """Status given the item's age at ``now``, and how long after creation it was last touched.

    Young items are mostly open; older ones have mostly been resolved or dismissed.
    """
    if age <= timedelta(0):
        return "open", timedelta(0)
    days = age / timedelta(days=1)
    statuses = ("open", "in_progress", "resolved", "dismissed")
    weights = ((0.85, 0.15, 0.0, 0.0) if days < 3 else (0.5, 0.25, 0.2, 0.05) if days < 14
               else (0.2, 0.1, 0.55, 0.15))
    status = rng.choices(statuses, weights)[0]
    if status == "open":
        return status, timedelta(0)
    return status, min(age, timedelta(days=10)) * rng.uniform(0.05, 1.0)


def simulate_feedback(*, seed: int, now: datetime,
                      user_ids: Sequence[str]) -> list[FeedbackRecord]:
    """Every submission from ``now - 90 days`` to ``now + 30 days``, oldest first, ids 1..n.

    Deterministic for (seed, now, number of users). Items after ``now`` are open and untouched.
    """
    rng = random.Random(f"{seed}:feedback")
    widget_names, widget_weights = list(WIDGET_CATEGORIES), list(WIDGET_CATEGORIES.values())
    browser_weights = [weight for _, _, weight in BROWSERS]
    next_issue = 101
    records = []
    for number, created in enumerate(_submission_times(rng, now), start=1):
        from_chatbot = rng.random() < CHATBOT_SHARE
        category = (rng.choice(CHATBOT_CATEGORIES) if from_chatbot
                    else rng.choices(widget_names, widget_weights)[0])
        rating = _rating(rng, category, created, now)
        compound = sentiment = None
        if created >= now - SENTIMENT_SHIPPED:
            compound = round(rng.uniform(*COMPOUND_BANDS[rating]), 3)
            sentiment = _sentiment(compound)
        feedback_type = _feedback_type(rng, category)
        status, touched_after = _triage(rng, now - created)
        issue_url = None
        if (feedback_type != "feedback" and status in ("in_progress", "resolved")
                and rng.random() < 0.6):
            issue_url, next_issue = f"{ISSUE_TRACKER}/{next_issue}", next_issue + 1
        if from_chatbot:
            page_url = browser_info = None
            user_agent, has_screenshot = CHATBOT_USER_AGENT, False
        else:
            page_url = PORTAL + rng.choice(PAGES[category])
            browser_info, user_agent, _ = rng.choices(BROWSERS, browser_weights)[0]
            has_screenshot = rng.random() < (0.35 if feedback_type == "bug_report" else 0.05)
        email = (f"dev{rng.randrange(len(user_ids)) + 1}@example.com"
                 if user_ids and rng.random() < 0.55 else None)
        records.append(FeedbackRecord(
            id=number, rating=rating, category=category,
            comment=_comment(rng, category, rating), email=email, page_url=page_url,
            status=status, sentiment=sentiment, sentiment_compound=compound,
            feedback_type=feedback_type, browser_info=browser_info, user_agent=user_agent,
            has_screenshot=has_screenshot, github_issue_url=issue_url,
            created_at=created, updated_at=created + touched_after))
    return records


def upstream_feedback_stats(records: Sequence[FeedbackRecord]) -> dict[str, Any]:
    """``GET /api/v1/feedback/stats``: all-time totals as the upstream's SQL aggregates them."""
    ratings = Counter(record.rating for record in records)
    return {
        "total_feedback": len(records),
        "average_rating": sum(r.rating for r in records) / len(records) if records else 0.0,
        "by_category": dict(Counter(record.category for record in records)),
        "by_status": dict(Counter(record.status for record in records)),
        "by_rating": {str(rating): ratings[rating] for rating in sorted(ratings)},
    }


# --------------------------------------------------------------------------------------------
# HTTP application
# --------------------------------------------------------------------------------------------

def _authorization_error(request: web.Request, admin_token: str) -> web.Response | None:
    """The upstream's admin check: 401 without a Bearer header, 403 for a wrong token."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return fastapi_json_response(
            {"detail": "Missing or invalid authorization header"}, status=401)
    token = header.removeprefix("Bearer ")
    # Constant-time comparison: response timing must not reveal how much of a guess matched.
    if not hmac.compare_digest(token.encode(), admin_token.encode()):
        return fastapi_json_response({"detail": "Invalid admin token"}, status=403)
    return None


def build_feedback_app(*, seed: int, now: datetime, user_ids: Sequence[str], admin_token: str,
                       clock: Callable[[], float] = time.time,
                       latency_s: float = 0.0) -> web.Application:
    """The simulated Feedback Service (``/health``, ``/api/v1/feedback``, ``.../stats``).

    ``now`` (tz-aware) anchors the data; ``clock`` advances simulated time from it, revealing
    later submissions; ``latency_s`` delays every response.
    """
    if not admin_token:
        raise ValueError("admin_token must not be empty")
    current_time = simulated_clock(now, clock)
    records = simulate_feedback(seed=seed, now=now, user_ids=user_ids)
    created = [record.created_at for record in records]

    def submitted_so_far() -> list[FeedbackRecord]:
        return records[:bisect.bisect_right(created, current_time())]

    async def health(request: web.Request) -> web.Response:
        return fastapi_json_response({"status": "healthy", "service": "feedback-service",
                                      "version": "1.0.0", "database_connected": True})

    async def list_feedback(request: web.Request) -> web.Response:
        # FastAPI runs the token dependency before it validates query parameters.
        if (denied := _authorization_error(request, admin_token)) is not None:
            return denied
        paging = read_int_queries(request, IntQuery("page", 1, ge=1),
                                  IntQuery("page_size", 20, ge=1, le=100))
        page, page_size = paging["page"], paging["page_size"]
        status = optional_text_query(request, "status")
        category = optional_text_query(request, "category")
        newest_first = [r for r in reversed(submitted_so_far())
                        if (status is None or r.status == status)
                        and (category is None or r.category == category)]
        offset = (page - 1) * page_size
        return fastapi_json_response({
            "items": [r.as_upstream_json() for r in newest_first[offset:offset + page_size]],
            "total": len(newest_first), "page": page, "page_size": page_size})

    async def feedback_stats(request: web.Request) -> web.Response:
        if (denied := _authorization_error(request, admin_token)) is not None:
            return denied
        return fastapi_json_response(upstream_feedback_stats(submitted_so_far()))

    app = web.Application(middlewares=platform_service_middlewares(latency_s))
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/feedback", list_feedback)
    app.router.add_get("/api/v1/feedback/stats", feedback_stats)
    return app
