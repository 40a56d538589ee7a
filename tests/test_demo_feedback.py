"""The simulated Feedback Service against its upstream contract (docs/upstreams.md#feedback-service)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from exporter.demo.feedback import build_feedback_app
from tests.conftest import FakeClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
USERS = [f"u-{number:04d}" for number in range(1, 301)]  # the population's default size
SEED = 7
TOKEN = "demo-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

ITEM_KEYS = {"id", "rating", "category", "comment", "email", "page_url", "status", "sentiment",
             "sentiment_compound", "feedback_type", "browser_info", "user_agent",
             "has_screenshot", "github_issue_url", "created_at", "updated_at"}
WIDGET_CATEGORIES = {"UI/UX", "Performance", "Documentation", "Features", "Bug Report", "Other"}
NAIVE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?")


def build(seed: int = SEED, clock=None):
    return build_feedback_app(seed=seed, now=NOW, user_ids=USERS, admin_token=TOKEN,
                              clock=clock or FakeClock(5_000.0))


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(build())


def utc(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp).replace(tzinfo=timezone.utc)


async def all_items(client, **params) -> list[dict]:
    """Every item, page by page (100 per page), in the order the service lists them."""
    items, page = [], 1
    while True:
        response = await client.get("/api/v1/feedback", headers=ADMIN,
                                    params={"page": page, "page_size": 100, **params})
        assert response.status == 200
        body = await response.json()
        items += body["items"]
        if page * body["page_size"] >= body["total"]:
            assert len(items) == body["total"]
            return items
        page += 1


async def feedback_stats(client) -> dict:
    response = await client.get("/api/v1/feedback/stats", headers=ADMIN)
    assert response.status == 200
    return await response.json()


async def test_health_needs_no_token(client):
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "healthy", "service": "feedback-service",
                                     "version": "1.0.0", "database_connected": True}


@pytest.mark.parametrize("path", ["/api/v1/feedback", "/api/v1/feedback/stats"])
@pytest.mark.parametrize("headers, status, detail", [
    ({}, 401, "Missing or invalid authorization header"),
    ({"Authorization": f"Basic {TOKEN}"}, 401, "Missing or invalid authorization header"),
    ({"Authorization": f"bearer {TOKEN}"}, 401, "Missing or invalid authorization header"),
    ({"Authorization": TOKEN}, 401, "Missing or invalid authorization header"),
    ({"Authorization": "Bearer wrong-token"}, 403, "Invalid admin token"),
    # HTTP strips the trailing space, so an empty token is a bare "Bearer": no Bearer header.
    ({"Authorization": "Bearer "}, 401, "Missing or invalid authorization header"),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403, "Invalid admin token"),
])
async def test_admin_token_is_required(client, path, headers, status, detail):
    response = await client.get(path, headers=headers)
    assert response.status == status
    assert await response.json() == {"detail": detail}


async def test_authentication_is_checked_before_parameters(client):
    response = await client.get("/api/v1/feedback", params={"page_size": 500})
    assert response.status == 401


async def test_list_shape_and_item_fields(client):
    response = await client.get("/api/v1/feedback", headers=ADMIN)
    body = await response.json()
    assert set(body) == {"items", "total", "page", "page_size"}
    assert (body["page"], body["page_size"], len(body["items"])) == (1, 20, 20)
    for item in await all_items(client):
        assert set(item) == ITEM_KEYS
        assert isinstance(item["id"], int) and item["rating"] in range(1, 6)
        assert item["status"] in {"open", "in_progress", "resolved", "dismissed"}
        assert item["feedback_type"] in {"feedback", "bug_report", "feature_request"}
        assert isinstance(item["comment"], str) and item["comment"]
        assert item["email"] is None or re.fullmatch(r"dev\d+@example\.com", item["email"])
        assert isinstance(item["has_screenshot"], bool)
        for field in ("created_at", "updated_at"):
            assert NAIVE_TIMESTAMP.fullmatch(item[field]), item[field]
            assert datetime.fromisoformat(item[field]).tzinfo is None
        assert item["updated_at"] >= item["created_at"]
        assert utc(item["updated_at"]) <= NOW


async def test_sentiment_agrees_with_rating_and_with_the_vader_thresholds(client):
    items = await all_items(client)
    scored = [i for i in items if i["sentiment_compound"] is not None]
    assert 0 < len(scored) < len(items)  # old rows predate the sentiment column
    for item in items:
        compound = item["sentiment_compound"]
        if compound is None:
            assert item["sentiment"] is None
            continue
        assert -1 <= compound <= 1
        assert item["sentiment"] == ("positive" if compound >= 0.05
                                     else "negative" if compound <= -0.05 else "neutral")
        if item["rating"] >= 4:
            assert compound > 0
        if item["rating"] <= 2:
            assert compound < 0


async def test_newest_first_across_pages(client):
    items = await all_items(client)
    created = [utc(item["created_at"]) for item in items]
    assert created == sorted(created, reverse=True)
    assert len({item["id"] for item in items}) == len(items)
    beyond = await client.get("/api/v1/feedback", headers=ADMIN,
                              params={"page": 1000, "page_size": 100})
    body = await beyond.json()
    assert body["items"] == [] and body["total"] == len(items)


@pytest.mark.parametrize("params, errors", [
    ({"page_size": 101}, [("less_than_equal", ["query", "page_size"])]),
    ({"page_size": 0}, [("greater_than_equal", ["query", "page_size"])]),
    ({"page": 0}, [("greater_than_equal", ["query", "page"])]),
    ({"page": "two", "page_size": 1000}, [("int_parsing", ["query", "page"]),
                                          ("less_than_equal", ["query", "page_size"])]),
])
async def test_page_size_is_capped_at_100_with_fastapi_422(client, params, errors):
    response = await client.get("/api/v1/feedback", headers=ADMIN, params=params)
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert [(e["type"], e["loc"]) for e in detail] == errors
    assert all(isinstance(e["msg"], str) for e in detail)


async def test_page_size_100_is_allowed(client):
    response = await client.get("/api/v1/feedback", headers=ADMIN, params={"page_size": 100})
    assert response.status == 200
    assert len((await response.json())["items"]) == 100


async def test_stats_totals_equal_the_sums_over_all_pages(client):
    items = await all_items(client)
    totals = await feedback_stats(client)
    assert set(totals) == {"total_feedback", "average_rating", "by_category", "by_status",
                           "by_rating"}
    assert totals["total_feedback"] == len(items)
    assert totals["average_rating"] == pytest.approx(
        sum(i["rating"] for i in items) / len(items), rel=1e-12)
    assert totals["by_category"] == Counter(i["category"] for i in items)
    assert totals["by_status"] == Counter(i["status"] for i in items)
    ratings = Counter(i["rating"] for i in items)
    assert totals["by_rating"] == {str(rating): count for rating, count in ratings.items()}
    assert list(totals["by_rating"]) == sorted(totals["by_rating"])


async def test_filters_are_exact_matches(client):
    totals = await feedback_stats(client)
    for status, count in totals["by_status"].items():
        matching = await all_items(client, status=status)
        assert len(matching) == count and {i["status"] for i in matching} == {status}
    documentation = await all_items(client, category="Documentation")
    assert len(documentation) == totals["by_category"]["Documentation"]
    assert await all_items(client, category="documentation") == []
    assert len(await all_items(client, category="")) == totals["total_feedback"]


async def test_a_few_hundred_items_over_the_last_90_days_with_free_text_categories(client):
    items = await all_items(client)
    assert 200 <= len(items) <= 600
    created = [utc(item["created_at"]) for item in items]
    assert NOW - timedelta(days=90) <= min(created) and max(created) <= NOW
    assert max(created) - min(created) > timedelta(days=80)
    categories = Counter(item["category"] for item in items)
    assert WIDGET_CATEGORIES <= set(categories)
    chatbot = set(categories) - WIDGET_CATEGORIES
    assert len(chatbot) >= 6  # enough rare labels that a top-N cap has work to do
    assert sum(categories[c] for c in WIDGET_CATEGORIES) > 0.8 * len(items)


@pytest.mark.parametrize("seed", [SEED, 11, 12])
async def test_satisfaction_drifts_upward(aiohttp_client, seed):
    client = await aiohttp_client(build(seed=seed))
    items = await all_items(client)

    def mean_rating(newest_days: int, oldest_days: int) -> float:
        window = [i["rating"] for i in items
                  if NOW - timedelta(days=oldest_days) <= utc(i["created_at"])
                  < NOW - timedelta(days=newest_days)]
        return sum(window) / len(window)

    assert mean_rating(0, 30) > mean_rating(60, 90)


async def test_clock_reveals_new_submissions(aiohttp_client):
    clock = FakeClock(5_000.0)
    client = await aiohttp_client(build(clock=clock))
    before = await all_items(client)
    clock.advance(3 * 86400)
    after = await all_items(client)
    new = after[:len(after) - len(before)]
    assert new and after[len(new):] == before
    assert all(utc(item["created_at"]) > NOW for item in new)
    assert min(item["id"] for item in new) > max(item["id"] for item in before)
    assert (await feedback_stats(client))["total_feedback"] == len(after)


async def test_same_seed_same_items(aiohttp_client):
    first, again, other = [await aiohttp_client(build(seed=seed)) for seed in (SEED, SEED, 8)]
    assert await all_items(first) == await all_items(again)
    assert await all_items(first) != await all_items(other)


def test_an_empty_admin_token_is_refused():
    with pytest.raises(ValueError):
        build_feedback_app(seed=SEED, now=NOW, user_ids=USERS, admin_token="")
