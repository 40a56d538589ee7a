"""User segments end to end, and usage / feature adoption counted from identified users.

Users are hand-built, one per behaviour, so the expected segment of each follows from the rules
of docs/methods.md#segment-rules by hand; engagement is recomputed here from its formula. Usage and
feature counts are checked against plain set counts over the file.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo import catalog
from tests.conftest import FakeClock
from tests.fakes.events import Event, write_events

NOW_DT = datetime(2026, 5, 28, 15, 20, 11, tzinfo=timezone.utc)
NOW = int(NOW_DT.timestamp())
DAY = 86_400
TODAY = NOW // DAY
DEPLOY, CREATE, DOCS = catalog.DEPLOY_APPLICATION, catalog.SERVICE_CREATED, catalog.VIEW_DOCUMENTATION
LOGIN = catalog.USER_LOGIN  # not a configured feature


@pytest.fixture
def clock() -> FakeClock:  # also the service's clock in make_client
    return FakeClock(NOW)


def on_days(user: str, days_ago: list[int], events: tuple[str, ...] = (DEPLOY,)) -> list[Event]:
    """``events`` (cycled) at noon UTC of each of ``days_ago`` (0 = today)."""
    return [Event(user, events[i % len(events)], (TODAY - d) * DAY + 12 * 3_600) for i, d in enumerate(days_ago)]


# user -> (events, expected segment, L28, L28_prev, R, B)
USERS = {
    "power": (on_days("power", list(range(0, 28, 2)) + list(range(30, 56, 2)) + [80], (DEPLOY, CREATE, DOCS)),
              "power", 14, 13, 0, 3),
    "core": (on_days("core", [1, 4, 7, 10, 13, 16, 19, 22] + list(range(29, 53, 3)) + [85]), "core", 8, 8, 1, 1),
    "casual": (on_days("casual", [3, 9, 20, 35, 45, 60]), "casual", 3, 2, 3, 1),
    "new": (on_days("new", [5, 3, 0], (DOCS,)), "new", 3, 0, 0, 1),
    "at_risk": (on_days("at_risk", [2, 20] + list(range(28, 48, 2)) + [70]), "at_risk", 2, 10, 2, 1),
    "dormant": (on_days("dormant", [40, 45, 50, 80]), "dormant", 0, 3, 40, 0),
    "churned": (on_days("churned", [70, 75, 88]), "churned", 0, 0, 70, 0),
}
ALL_EVENTS = [event for events, *_ in USERS.values() for event in events] + on_days("lurker", [2, 30], (LOGIN,))


def engagement(l28: int, l28_prev: int, recency: int, breadth: int) -> float:
    f, rs, bs = min(l28 / 16, 1), math.exp(-recency / 7), min(breadth / 4, 1)
    ts = min(max(0.5 + 0.5 * (l28 - l28_prev) / max(l28_prev, 1), 0), 1)
    return 100 * (0.40 * f + 0.25 * rs + 0.20 * bs + 0.15 * ts)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def segments_json(client, **params) -> dict:
    response = await client.get("/api/v1/user-segments", params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_each_hand_built_user_lands_in_its_segment(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS)
    client, _ = await make_client(**{"events.path": str(path)})
    body = await segments_json(client)
    segments = {s["segment_name"]: s for s in body["segments"]}
    assert list(segments) == ["power", "core", "casual", "new", "at_risk", "dormant", "churned"]
    # "lurker" only logs in: login is no configured feature, but every event is meaningful by default.
    assert body["total_users"] == len(USERS) + 1
    assert segments["casual"]["user_count"] == 2
    for name, (_, expected, l28, l28_prev, recency, breadth) in USERS.items():
        segment = segments[expected]
        if expected != "casual":
            assert segment["user_count"] == 1, name
            assert segment["avg_engagement"] == pytest.approx(engagement(l28, l28_prev, recency, breadth)), name
            assert segment["characteristics"]["median_active_days_28d"] == l28
            assert segment["characteristics"]["median_features_used_28d"] == breadth
    assert sum(s["percentage"] for s in body["segments"]) == pytest.approx(100)
    assert body["segmentation_method"] == "behavioral"
    assert body["definitions"]["thresholds"]["power_min_features"] == 3
    assert body["definitions"]["features"] == {event: feature for feature, event in catalog.FEATURE_GOALS.items()}
    curve = {point["days_active"]: point["users"] for point in body["power_user_curve"]}
    assert sorted(curve) == list(range(29)) and sum(curve.values()) == body["total_users"]
    assert curve[14] == 1 and curve[0] == 2  # power; dormant and churned


async def test_metrics_agree_with_the_json(tmp_path, make_client):
    client, _ = await make_client(**{"events.path": str(write_events(tmp_path / "events.jsonl", ALL_EVENTS))})
    values = samples(await (await client.get("/metrics")).text())
    for segment in (await segments_json(client))["segments"]:
        labels = (("segment_name", segment["segment_name"]),)
        assert values[("analytics_segment_size", labels)] == segment["user_count"]
        assert values[("analytics_segment_engagement", labels)] == pytest.approx(segment["avg_engagement"])


async def test_configured_thresholds_and_meaningful_events_apply(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS)
    client, _ = await make_client(**{"events.path": str(path), "segments.thresholds.power_min_features": 4,
                                     "segments.meaningful_events": [DEPLOY, CREATE, DOCS]})
    body = await segments_json(client)
    sizes = {s["segment_name"]: s["user_count"] for s in body["segments"]}
    assert sizes["power"] == 0 and sizes["core"] == 2  # three features are no longer enough
    assert body["total_users"] == len(USERS)  # the lurker's logins are not activity any more
    assert body["definitions"]["thresholds"]["power_min_features"] == 4
    assert body["definitions"]["meaningful_events"] == sorted([DEPLOY, CREATE, DOCS])


async def test_every_time_range_shares_one_snapshot(tmp_path, make_client):
    client, _ = await make_client(**{"events.path": str(write_events(tmp_path / "events.jsonl", ALL_EVENTS))})
    week, default = await segments_json(client, time_range="7d"), await segments_json(client)
    assert (week["time_range"], default["time_range"]) == ("7d", "30d")
    assert week["generated_at"] == default["generated_at"] and week["segments"] == default["segments"]
    assert "time_range does not change them" in week["time_range_note"]
    response = await client.get("/api/v1/user-segments", params={"time_range": "1y"})
    assert response.status == 400


# --- usage and features from identified users --------------------------------------------------

def window_start(days: int) -> int:
    return (TODAY - days + 1) * DAY


def active(events: list[Event], start: int, names: set[str] | None = None) -> set[str]:
    return {e.user for e in events if start <= e.ts <= NOW and (names is None or e.event in names)}


async def test_usage_counts_identified_users(tmp_path, make_client):
    future = [Event("ahead", DEPLOY, NOW + 3_600)]  # a producer's clock running ahead: not yet a user
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS + future)
    plain, _ = await make_client()
    client, _ = await make_client(**{"events.path": str(path)})
    for time_range, days in (("7d", 7), ("30d", 30)):
        visitors = await (await plain.get("/api/v1/usage-trends", params={"time_range": time_range})).json()
        body = await (await client.get("/api/v1/usage-trends", params={"time_range": time_range})).json()
        assert body["basis"] == "identified_users" and body["sources"]["events"]["status"] == "up"
        assert body["total_users"] == len({e.user for e in ALL_EVENTS}) == 8
        assert body["active_users"] == len(active(ALL_EVENTS, window_start(days)))
        # Plausible's own numbers are still there, unchanged.
        assert body["unique_visitors"] == visitors["unique_visitors"] and visitors["basis"] == "plausible_visitors"
    values = samples(await (await client.get("/metrics")).text())
    assert values[("analytics_active_users", (("window", "7d"),))] == len(active(ALL_EVENTS, window_start(7)))


async def test_usage_active_users_follow_the_meaningful_events(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS)
    client, _ = await make_client(**{"events.path": str(path), "segments.meaningful_events": [DOCS]})
    body = await (await client.get("/api/v1/usage-trends", params={"time_range": "30d"})).json()
    assert body["active_users"] == len(active(ALL_EVENTS, window_start(30), {DOCS})) == 2


async def test_feature_unique_users_come_from_identified_users(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS)
    client, _ = await make_client(**{"events.path": str(path)})
    body = await (await client.get("/api/v1/feature-adoption", params={"time_range": "30d"})).json()
    assert body["basis"] == "identified_users" and "events" in body["sources"]
    active_users = len(active(ALL_EVENTS, window_start(30)))
    assert body["active_users"] == active_users
    features = {f["feature_name"]: f for f in body["features"]}
    for name, event in catalog.FEATURE_GOALS.items():
        if features[name]["unique_users"] is None:
            continue  # a goal the fake Plausible does not know stays unobservable
        users = len(active(ALL_EVENTS, window_start(30), {event}))
        assert features[name]["unique_users"] == users, name
        assert features[name]["adoption_rate"] == pytest.approx(users / active_users)
    assert features["Deploy Application"]["unique_users"] == 4  # power, core, casual, at_risk


async def test_feature_first_seen_and_last_used_come_from_the_events(tmp_path, make_client):
    future = [Event("ahead", DEPLOY, NOW + 3_600)]  # not used yet: after now
    path = write_events(tmp_path / "events.jsonl", ALL_EVENTS + future)
    client, _ = await make_client(**{"events.path": str(path)})
    body = await (await client.get("/api/v1/feature-adoption", params={"time_range": "7d"})).json()
    features = {f["feature_name"]: f for f in body["features"]}
    for name, event in catalog.FEATURE_GOALS.items():
        times = [e.ts for e in ALL_EVENTS if e.event == event]  # whole history up to now, whatever the window
        feature = features[name]
        if not times:
            assert feature["first_seen"] is None and feature["last_used"] is None, name
            assert "never_used" in feature["status_codes"]
            continue
        assert feature["first_seen"] == iso(min(times)) and feature["last_used"] == iso(max(times)), name
        assert "usage_dates_unavailable" not in feature["status_codes"]


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
