"""A fake Feedback Service on loopback (docs/upstreams.md#feedback-service) with fault switches and a request log.

Items are plain dicts in the upstream's JSON shape, kept newest first. The admin check answers
like the upstream: 401 without a Bearer header, 403 for a wrong token. ``fault`` forces
``401`` (a proxy that strips the header), ``503`` (database down) or ``503html`` (a proxy page).
``on_page`` runs after each list page is served, e.g. to simulate a submission mid-walk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from aiohttp import web

ADMIN_TOKEN = "fb-admin-token-7d3e91c4"
CATEGORIES = ("UI/UX", "Performance", "Documentation", "Features", "Bug Report", "Other")
SENTIMENTS = ("positive", "neutral", "negative", None)
STATUSES = ("open", "in_progress", "resolved", "dismissed")
TYPES = ("feedback", "bug_report", "feature_request")


def make_items(now: datetime, count: int = 350, spacing: timedelta = timedelta(hours=6),
               categories: tuple[str, ...] = CATEGORIES) -> list[dict[str, Any]]:
    """``count`` well-formed items, newest first, one every ``spacing`` back from ``now`` (naive UTC)."""
    items = []
    for i in range(count):
        created = (now - spacing * (i + 0.5)).replace(tzinfo=None)
        rating = 1 + (i * 7) % 5
        sentiment = SENTIMENTS[i % 4]
        items.append({
            "id": count - i, "rating": rating, "category": categories[(i * 5) % len(categories)],
            "comment": f"secret comment number {i}", "email": f"person{i}@example.com",
            "page_url": "https://backstage.fawkes.idp/docs", "status": STATUSES[(i * 3) % 4],
            "sentiment": sentiment,
            "sentiment_compound": None if sentiment is None else round(((i * 37) % 200 - 100) / 100, 2),
            "feedback_type": TYPES[i % 3], "browser_info": "Chrome 120", "user_agent": "Mozilla/5.0",
            "has_screenshot": False, "github_issue_url": None,
            "created_at": created.isoformat(), "updated_at": created.isoformat(),
        })
    return items


@dataclass
class FakeFeedback:
    items: list[dict[str, Any]]
    token: str = ADMIN_TOKEN
    fault: str | None = None  # 401 | 503 | 503html
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    on_page: Callable[[int], None] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/feedback", self.list_feedback)
        app.router.add_get("/api/v1/feedback/stats", self.stats)
        return app

    def list_requests(self) -> int:
        return sum(path == "/api/v1/feedback" for path, _ in self.requests)

    def _denied(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.path, dict(request.query)))
        if self.fault == "503":
            return web.json_response({"detail": "Database not available"}, status=503)
        if self.fault == "503html":
            return web.Response(status=503, text="<html>Service Unavailable</html>", content_type="text/html")
        header = request.headers.get("Authorization", "")
        if self.fault == "401" or not header.startswith("Bearer "):
            return web.json_response({"detail": "Missing or invalid authorization header"}, status=401)
        if header.removeprefix("Bearer ") != self.token:
            return web.json_response({"detail": "Invalid admin token"}, status=403)
        return None

    async def list_feedback(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        page, page_size = int(request.query.get("page", 1)), int(request.query.get("page_size", 20))
        if page_size > 100:
            return web.json_response({"detail": [{"msg": "ensure this value is less than or equal to 100"}]},
                                     status=422)
        chunk = self.items[(page - 1) * page_size:page * page_size]
        response = web.json_response({"items": chunk, "total": len(self.items), "page": page, "page_size": page_size})
        if self.on_page is not None:
            self.on_page(page)
        return response

    async def stats(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        statuses = Counter(item.get("status") for item in self.items if isinstance(item, dict))
        return web.json_response({"total_feedback": len(self.items), "average_rating": 4.0, "by_category": {},
                                  "by_status": dict(statuses), "by_rating": {}})
