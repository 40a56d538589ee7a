"""The Feedback Service client against a fake server on loopback: paging, parsing, auth, faults."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from exporter.config import FeedbackConfig
from exporter.errors import SourceError
from exporter.health import HealthRegistry
from exporter.secrets import Secret
from exporter.sources.feedback import FeedbackClient, FeedbackItem, parse_item
from tests.fakes.feedback import ADMIN_TOKEN, FakeFeedback, make_items

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def fake() -> FakeFeedback:
    return FakeFeedback(make_items(NOW))


@pytest.fixture
async def connect(aiohttp_server, fake):
    clients = []

    async def make(token: str = ADMIN_TOKEN) -> FeedbackClient:
        server = await aiohttp_server(fake.app())
        health = HealthRegistry()
        health.register("feedback")
        config = FeedbackConfig(url=str(server.make_url("/")), admin_token=Secret(token), max_retries=1,
                                timeout_seconds=1.0)
        clients.append(FeedbackClient(config, health))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


def created(item: dict) -> datetime:
    return datetime.fromisoformat(item["created_at"]).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("days", [7, 30, 60, 120])
async def test_paging_stops_at_the_first_item_older_than_the_window(connect, fake, days):
    start = NOW - timedelta(days=days)
    expected = [item for item in fake.items if created(item) >= start]
    older = [i for i, item in enumerate(fake.items) if created(item) < start]
    # The walk reads up to the page holding the first older item, or to the last page.
    expected_pages = older[0] // 100 + 1 if older else math.ceil(len(fake.items) / 100)
    client = await connect()

    window = await client.items_since(start)

    assert [item.created_at for item in window.items] == [created(item) for item in expected]
    assert fake.list_requests() == expected_pages
    assert [query["page_size"] for _, query in fake.requests] == ["100"] * expected_pages
    assert window.skipped == 0 and window.complete
    if days == 7:
        assert expected_pages == 1  # 28 items: the first page already reaches past the start


async def test_a_submission_during_the_walk_is_not_counted_twice(connect, fake):
    start = NOW - timedelta(days=60)
    expected = sum(created(item) >= start for item in fake.items)

    def submit_after_first_page(page: int) -> None:
        if page == 1:  # shifts every item down by one: page 2 starts with page 1's last item
            newest = dict(fake.items[0], id=10_000, created_at=NOW.replace(tzinfo=None).isoformat())
            fake.items.insert(0, newest)

    fake.on_page = submit_after_first_page
    window = await (await connect()).items_since(start)
    assert len(window.items) == expected


def test_items_keep_only_what_the_summary_needs_with_utc_timestamps():
    raw = make_items(NOW, count=1)[0] | {"created_at": "2026-11-20T10:15:30.123456"}
    item = parse_item(raw)
    assert item.created_at == datetime(2026, 11, 20, 10, 15, 30, 123456, tzinfo=timezone.utc)
    fields = {f.name for f in dataclasses.fields(FeedbackItem)}
    assert not fields & {"email", "comment", "page_url", "user_agent", "browser_info", "id"}
    assert parse_item(raw | {"created_at": "2026-11-20T12:15:30+02:00"}).created_at == \
        datetime(2026, 11, 20, 10, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("change", [
    {"rating": "5"}, {"rating": None}, {"rating": True}, {"rating": 4.0},
    {"created_at": "yesterday"}, {"created_at": None}, {"created_at": 1732000000},
    {"category": 7}, {"status": ["open"]}, {"sentiment_compound": "0.5"},
])
def test_malformed_items_are_rejected(change):
    assert parse_item(make_items(NOW, count=1)[0] | change) is None


async def test_malformed_items_are_skipped_and_counted_and_bad_ratings_kept(connect, fake):
    good = make_items(NOW, count=10, spacing=timedelta(hours=1))
    broken = [{"rating": "five", "created_at": good[2]["created_at"]}, "not an object",
              dict(good[4], id=None, created_at="not a time")]
    fake.items = good[:3] + broken + [dict(good[3], rating=9)] + good[4:]
    window = await (await connect()).items_since(NOW - timedelta(days=1))
    assert window.skipped == 3
    assert len(window.items) == len(good)  # good[3] with an out-of-range rating is one of them
    assert sorted(item.rating for item in window.items).count(9) == 1


async def test_status_counts_come_from_the_all_time_stats(connect, fake):
    expected = Counter(item["status"] for item in fake.items)
    assert await (await connect()).status_counts() == expected
    assert fake.requests[-1][0] == "/api/v1/feedback/stats"


@pytest.mark.parametrize("fault, token, code, wording", [
    ("401", ADMIN_TOKEN, "unauthorized", "wants an admin bearer token"),
    (None, "wrong-token-0f9a", "forbidden", "rejected the admin token"),
    ("503", ADMIN_TOKEN, "upstream_unavailable", "database is down"),
    ("503html", ADMIN_TOKEN, "upstream_unavailable", "unavailable"),
])
async def test_auth_and_outage_answers_are_clear_and_never_echo_the_token(connect, fake, caplog, fault, token,
                                                                          code, wording):
    caplog.set_level(logging.DEBUG)
    fake.fault = fault
    client = await connect(token)
    with pytest.raises(SourceError) as raised:
        await client.items_since(NOW - timedelta(days=7))
    assert raised.value.code == code
    assert wording in str(raised.value) and str(raised.value).startswith("feedback: HTTP")
    assert token not in str(raised.value) and ADMIN_TOKEN not in str(raised.value)
    assert token not in caplog.text and ADMIN_TOKEN not in caplog.text
    # 503 is retried (once here); the auth failures are final at once.
    assert fake.list_requests() == (2 if fault in ("503", "503html") else 1)


async def test_a_list_that_is_not_a_list_is_an_invalid_response(aiohttp_server):
    from aiohttp import web

    async def handler(request):
        return web.json_response({"items": {"id": 1}, "total": 1})

    app = web.Application()
    app.router.add_get("/api/v1/feedback", handler)
    server = await aiohttp_server(app)
    health = HealthRegistry()
    health.register("feedback")
    client = FeedbackClient(FeedbackConfig(url=str(server.make_url("/")), admin_token=Secret(ADMIN_TOKEN)), health)
    try:
        with pytest.raises(SourceError) as raised:
            await client.items_since(NOW)
        assert raised.value.code == "invalid_response"
    finally:
        await client.close()
