"""GET /api/v1/feedback and the feedback metrics, end to end against fake and simulated services.

Every number is checked against a plain computation over the items the fake serves (Wilson
interval from statsmodels), never against the service's own code.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, time, timedelta, timezone

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from statsmodels.stats.proportion import proportion_confint

from exporter.demo.feedback import build_feedback_app, simulate_feedback
from tests.fakes.feedback import ADMIN_TOKEN, FakeFeedback, make_items

PUBLISHED = 1e-11  # numbers are published to 12 significant digits
FEEDBACK_METRICS = {
    "analytics_feedback_responses": {"window", "rating"},
    "analytics_feedback_average_rating": {"window"},
    "analytics_feedback_csat_ratio": {"window"},
    "analytics_feedback_sentiment_compound": {"window"},
    "analytics_feedback_open_items": set(),
    "analytics_feedback_category_responses": {"window", "category"},
}
MANY_CATEGORIES = ("UI/UX", "Performance", "Documentation", "Features", "Bug Report", "Other", "Deployment",
                   "Kubernetes", "Cost", "Search", "Secrets", "Onboarding")


def window_start(now: datetime, days: int) -> datetime:
    """Day windows are the N UTC calendar days ending today, today included."""
    return datetime.combine(now.date() - timedelta(days=days - 1), time(), timezone.utc)


def reference(rows: list[dict], top_n: int) -> dict:
    """The summary of docs/methods.md#feedback computed plainly from upstream-shaped rows."""
    ratings = [r["rating"] for r in rows]
    n = len(ratings)
    satisfied = sum(r >= 4 for r in ratings)
    promoters, detractors = ratings.count(5), sum(r <= 3 for r in ratings)
    compounds = [r["sentiment_compound"] for r in rows if r["sentiment_compound"] is not None]
    categories = Counter("other" if r["category"].lower() == "other" else r["category"] for r in rows)
    named = sorted(((c, k) for c, k in categories.items() if c != "other"), key=lambda ck: (-ck[1], ck[0]))[:top_n]
    capped = dict(named)
    if n - sum(capped.values()):
        capped["other"] = n - sum(capped.values())
    low, high = proportion_confint(satisfied, n, alpha=0.05, method="wilson")
    return {
        "total": n,
        "average_rating": float(np.mean(ratings)),
        "rating_distribution": {str(s): ratings.count(s) for s in range(1, 6)},
        "csat": satisfied / n,
        "csat_ci": [low, high],
        "nps_5star": {"score": 100 * (promoters - detractors) / n, "promoters": promoters,
                      "passives": ratings.count(4), "detractors": detractors},
        "sentiment": {"average_compound": float(np.mean(compounds)),
                      **{label: sum(r["sentiment"] == label for r in rows)
                         for label in ("positive", "neutral", "negative")}},
        "by_category": capped,
        "by_type": dict(Counter(r["feedback_type"] for r in rows)),
        "open_items_in_window": sum(r["status"] in ("open", "in_progress") for r in rows),
    }


def assert_matches(body: dict, expected: dict) -> None:
    for key in ("total", "rating_distribution", "by_type", "open_items_in_window"):
        assert body[key] == expected[key], key
    for key in ("average_rating", "csat"):
        assert body[key] == pytest.approx(expected[key], rel=PUBLISHED), key
    assert body["csat_ci"] == pytest.approx(expected["csat_ci"], rel=1e-9)
    assert body["nps_5star"] == pytest.approx(expected["nps_5star"], rel=PUBLISHED)
    assert body["sentiment"]["average_compound"] == pytest.approx(expected["sentiment"]["average_compound"])
    for label in ("positive", "neutral", "negative"):
        assert body["sentiment"][label] == expected["sentiment"][label]
    # Largest first, ties by name, "other" last.
    assert [(row["category"], row["count"]) for row in body["by_category"]] == list(expected["by_category"].items())


@pytest.fixture
def now(clock) -> datetime:
    return datetime.fromtimestamp(clock(), timezone.utc)


@pytest.fixture
def fake(now) -> FakeFeedback:
    return FakeFeedback(make_items(now, count=400, spacing=timedelta(hours=5), categories=MANY_CATEGORIES))


@pytest.fixture
def feedback_client(make_client, aiohttp_server, fake):
    async def make(token: str = ADMIN_TOKEN, **overrides):
        server = await aiohttp_server(fake.app())
        return await make_client(**{"sources.feedback.url": str(server.make_url("/")),
                                    "sources.feedback.admin_token": token,
                                    "sources.feedback.max_retries": 1, **overrides})

    return make


@pytest.mark.parametrize("time_range, days", [(None, 30), ("7d", 7), ("90d", 90)])
async def test_summary_equals_a_direct_computation(feedback_client, fake, now, time_range, days):
    client, _ = await feedback_client()
    response = await client.get("/api/v1/feedback", params={"time_range": time_range} if time_range else {})
    assert response.status == 200
    body = await response.json()
    start = window_start(now, days)
    rows = [item for item in fake.items
            if datetime.fromisoformat(item["created_at"]).replace(tzinfo=timezone.utc) >= start]
    assert_matches(body, reference(rows, top_n=8))
    assert body["time_range"] == f"{days}d"
    assert body["sources"]["feedback"]["status"] == "up"
    assert body["open_items"] == sum(i["status"] in ("open", "in_progress") for i in fake.items)
    assert body["skipped_items"] == 0 and body["status_codes"] == []
    assert body["window_start"] == start.isoformat().replace("+00:00", "Z")


async def test_no_email_or_comment_leaves_the_service(feedback_client, fake):
    client, _ = await feedback_client()
    text = await (await client.get("/api/v1/feedback", params={"time_range": "90d"})).text()
    metrics = await (await client.get("/metrics")).text()
    for item in fake.items:
        assert item["email"] not in text and item["email"] not in metrics
        assert item["comment"] not in text and item["comment"] not in metrics
    assert "email" not in text and "comment" not in text


async def test_malformed_items_are_skipped_and_reported(feedback_client, fake, now):
    fake.items.insert(3, {"id": 9999, "rating": "excellent", "created_at": fake.items[3]["created_at"]})
    client, _ = await feedback_client()
    body = await (await client.get("/api/v1/feedback")).json()
    assert body["skipped_items"] == 1 and "malformed_items_skipped" in body["status_codes"]
    start = window_start(now, 30)
    assert body["total"] == sum(isinstance(i["rating"], int) and
                                datetime.fromisoformat(i["created_at"]).replace(tzinfo=timezone.utc) >= start
                                for i in fake.items)


async def test_metrics_have_the_contract_names_labels_and_values(feedback_client):
    client, _ = await feedback_client(**{"metrics.feedback_windows": ["7d", "30d"]})
    bodies = {w: await (await client.get("/api/v1/feedback", params={"time_range": w})).json() for w in ("7d", "30d")}
    families = {f.name: f for f in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    for name, labels in FEEDBACK_METRICS.items():
        assert name in families, name
        assert families[name].type == "gauge"
        assert all(set(sample.labels) == labels for sample in families[name].samples), name
    def by_window(name: str) -> dict:
        return {(s.labels.get("window"), s.labels.get("rating") or s.labels.get("category")): s.value
                for s in families[name].samples}
    for window, body in bodies.items():
        responses = by_window("analytics_feedback_responses")
        assert {r: responses[(window, r)] for r in "12345"} == body["rating_distribution"]
        assert by_window("analytics_feedback_average_rating")[(window, None)] == pytest.approx(body["average_rating"])
        assert by_window("analytics_feedback_csat_ratio")[(window, None)] == pytest.approx(body["csat"])
        assert by_window("analytics_feedback_sentiment_compound")[(window, None)] == \
            pytest.approx(body["sentiment"]["average_compound"])
    (open_items,) = families["analytics_feedback_open_items"].samples
    assert open_items.value == bodies["30d"]["open_items"]


async def test_category_label_is_capped_to_the_top_n_plus_other(feedback_client, fake, now):
    client, _ = await feedback_client(**{"metrics.feedback_top_categories": 3})
    await client.get("/api/v1/feedback")
    families = {f.name: f for f in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    labels = {s.labels["category"]: s.value for s in families["analytics_feedback_category_responses"].samples}
    start = window_start(now, 30)
    counts = Counter(i["category"] for i in fake.items
                     if datetime.fromisoformat(i["created_at"]).replace(tzinfo=timezone.utc) >= start)
    top = sorted((c for c in counts if c != "Other"), key=lambda c: (-counts[c], c))[:3]
    assert set(labels) == {*top, "other"}
    assert sum(labels.values()) == sum(counts.values())
    assert len(set(counts)) > 4  # the cap did cut something


@pytest.mark.parametrize("fault, token, code", [
    ("401", ADMIN_TOKEN, "unauthorized"),
    (None, "wrong-admin-token-55aa", "forbidden"),
    ("503", ADMIN_TOKEN, "upstream_unavailable"),
])
async def test_upstream_refusals_are_503s_that_never_echo_the_token(feedback_client, fake, caplog, fault, token, code):
    caplog.set_level(logging.DEBUG)
    fake.fault = fault
    client, _ = await feedback_client(token)
    response = await client.get("/api/v1/feedback")
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == code and "Feedback Service" in error["message"]
    health = await (await client.get("/health")).json()
    assert health["sources"]["feedback"]["status"] == "down"
    assert "Feedback Service" in health["sources"]["feedback"]["error"]
    metrics = await (await client.get("/metrics")).text()
    assert "analytics_feedback_responses" not in metrics
    everything = "".join([str(error), str(health), metrics, caplog.text])
    assert token not in everything and ADMIN_TOKEN not in everything


async def test_without_an_admin_token_the_source_is_disabled_naming_the_setting(make_client, aiohttp_server, fake):
    server = await aiohttp_server(fake.app())
    client, _ = await make_client(**{"sources.feedback.url": str(server.make_url("/"))})
    response = await client.get("/api/v1/feedback")
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert "sources.feedback.admin_token" in message and "FEEDBACK_ADMIN_TOKEN" in message
    health = await (await client.get("/health")).json()
    assert health["sources"]["feedback"]["status"] == "disabled"
    assert fake.requests == []


async def test_invalid_time_range_is_a_400_naming_valid_values(feedback_client):
    client, _ = await feedback_client()
    response = await client.get("/api/v1/feedback", params={"time_range": "2w"})
    assert response.status == 400
    assert "30d" in (await response.json())["error"]["message"]


async def test_demo_feedback_numbers_equal_a_direct_computation(make_client, aiohttp_server, clock, now):
    user_ids = [f"u-{i}" for i in range(300)]
    app = build_feedback_app(seed=7, now=now, user_ids=user_ids, admin_token=ADMIN_TOKEN, clock=clock)
    server = await aiohttp_server(app)
    client, _ = await make_client(**{"sources.feedback.url": str(server.make_url("/")),
                                     "sources.feedback.admin_token": ADMIN_TOKEN})
    body = await (await client.get("/api/v1/feedback")).json()
    start = window_start(now, 30)
    records = [r.as_upstream_json() for r in simulate_feedback(seed=7, now=now, user_ids=user_ids)
               if start <= r.created_at <= now]
    assert len(records) > 50
    assert_matches(body, reference(records, top_n=8))
