"""Filters and breakdowns end to end (docs/api.md#filters-and-breakdowns): an events file whose
events carry a ``team`` property -> every identified section, filtered and broken down.

Expected numbers come from plain references written here: each user's team read the obvious way
(the team on their latest event carrying one, ties in a second to the greatest text), the funnel
reference of tests/event_logs.py run on the users of a team, statsmodels' unpooled two-proportion
test with Holm for ``vs_rest``, and sums over the groups for the sections whose groups partition
the users.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from statsmodels.stats import proportion
from statsmodels.stats.multitest import multipletests

from exporter.platform_names import DEPLOY_APPLICATION, SERVICE_CREATED, START_SERVICE_CREATION, VIEW_DOCUMENTATION
from tests.conftest import FakeClock
from tests.event_logs import reference_reach
from tests.fakes.events import iso
from tests.test_funnels_api import NOW, check_against_reference, day_range_start, samples

DAY = 86_400
NONE, OTHER = "(none)", "(other)"
TEAMS = ("payments", "search", "web", "data", "o'brien; DROP TABLE x--", "é ü 雪")
STEPS = (START_SERVICE_CREATION, SERVICE_CREATED, DEPLOY_APPLICATION)
FUNNEL = {"name": "ship", "description": "Scaffold to deploy", "window_seconds": 3 * DAY,
          "steps": [{"name": f"step_{k}", "event": event} for k, event in enumerate(STEPS)]}
DIMENSIONS = [{"name": "team", "property": "team"}]
HOSTILE = ("o'brien; DROP TABLE x--", "100%", "a_b", "é ü 雪", "{placeholder:String}", '"quoted"', "x\\y")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def team_events(seed: int, users: int = 160) -> list[tuple[str, str, int, str | None]]:
    """(user, event, time, team or None): teams of very different sizes, some users moving team
    (only their latest team counts), some never saying, teams carried on about half the events."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        user = f"u-{u:03d}"
        teams = [rng.choices(TEAMS, weights=(40, 25, 15, 10, 6, 4))[0], rng.choice(TEAMS)]
        says = rng.random() > 0.1
        moves_at = NOW - rng.randint(0, 20 * DAY)
        for _ in range(rng.randint(1, 4)):
            t = NOW - rng.randint(0, 25 * DAY)
            chain = [STEPS[0]] + [step for step in STEPS[1:] if rng.random() < 0.6]
            for event in chain:
                team = teams[t >= moves_at] if says and rng.random() < 0.5 else None
                events.append((user, event, t, team))
                t += rng.choice([1, 60, 3_600, 2 * DAY, 4 * DAY])
            events.append((user, VIEW_DOCUMENTATION, NOW - rng.randint(0, 25 * DAY), None))
    events = [event for event in events if event[2] <= NOW]
    rng.shuffle(events)
    return events


def write(path: Path, events) -> Path:
    lines = []
    for user, event, ts, team in events:
        record = {"user_id": user, "event": event, "timestamp": iso(ts)}
        if team is not None:
            record["properties"] = {"team": team}
        lines.append(json.dumps(record) + "\n")
    path.write_text("".join(lines))
    return path


def team_of(events, end: int) -> dict[str, str]:
    """Each user's team: the latest carried before ``end`` (ties to the greatest text), else (none)."""
    latest: dict[str, tuple[int, str]] = {}
    for user, _, ts, team in events:
        if team is not None and ts < end and (user not in latest or (ts, team) > latest[user]):
            latest[user] = (ts, team)
    return {user: latest[user][1] if user in latest else NONE for user, *_ in events}


def plain(events) -> list[tuple[str, str, int]]:
    return [(user, event, ts) for user, event, ts, _ in events]


async def get(client, path: str, **params) -> dict:
    response = await client.get(path, params=[(name, value) for name, values in params.items()
                                              for value in (values if isinstance(values, list) else [values])])
    assert response.status == 200, await response.text()
    return await response.json()


async def make_team_client(make_client, tmp_path, events, **overrides):
    path = write(tmp_path / "events.jsonl", events)
    return await make_client(**{"events.path": str(path), "funnels": [FUNNEL], "dimensions": DIMENSIONS,
                                **overrides})


# --- funnels -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("without_gc_collect")
@pytest.mark.parametrize("seed", [1, 2])
async def test_funnel_groups_are_the_funnels_of_each_teams_users(tmp_path, make_client, seed):
    events = team_events(seed)
    client, _ = await make_team_client(make_client, tmp_path, events)
    body = await get(client, "/api/v1/funnel/ship", breakdown="team")
    teams = team_of(events, NOW + 1)
    start = day_range_start(30)
    reach = reference_reach(plain(events), STEPS, 3 * DAY, start, NOW + 1)
    check_against_reference(body, reach, len(STEPS))  # the whole is the plain funnel's
    assert "filters" not in body

    breakdown = body["breakdown"]
    entrants = Counter(teams[user] for user in reach)
    assert breakdown["dimension"] == "team" and breakdown["other_values"] == 0
    assert [group["value"] for group in breakdown["groups"]] == \
        sorted(entrants, key=lambda team: (-entrants[team], team))
    for group in breakdown["groups"]:
        assert group["users"] == entrants[group["value"]]
        check_against_reference(group, {user: times for user, times in reach.items()
                                        if teams[user] == group["value"]}, len(STEPS))

    # vs_rest: statsmodels' unpooled (Wald) two-proportion test, Holm over the groups listed.
    completed = Counter(teams[user] for user, times in reach.items() if len(times) == len(STEPS))
    total, done = sum(entrants.values()), sum(completed.values())
    expected = [proportion.test_proportions_2indep(
        completed[g["value"]], entrants[g["value"]], done - completed[g["value"]], total - entrants[g["value"]],
        method="wald", compare="diff", correction=False).pvalue for g in breakdown["groups"]]
    adjusted = multipletests(expected, method="holm")[1]
    for group, p_value, holm in zip(breakdown["groups"], expected, adjusted):
        assert group["vs_rest"]["p_value"] == pytest.approx(p_value, rel=1e-9)
        assert group["vs_rest"]["adjusted_p_value"] == pytest.approx(holm, rel=1e-9)
        assert group["vs_rest"]["is_significant"] is bool(holm < 0.05)


async def test_filters_or_within_a_dimension_and_none_selects_users_without_a_team(tmp_path, make_client):
    events = team_events(3)
    client, _ = await make_team_client(make_client, tmp_path, events)
    teams = team_of(events, NOW + 1)
    reach = reference_reach(plain(events), STEPS, 3 * DAY, day_range_start(30), NOW + 1)
    for chosen in (["payments"], ["search", "web"], [NONE], ["search", NONE, "search"]):
        body = await get(client, "/api/v1/funnel/ship", filter=[f"team:{team}" for team in chosen])
        assert body["filters"] == {"team": list(dict.fromkeys(chosen))}
        check_against_reference(body, {u: t for u, t in reach.items() if teams[u] in chosen}, len(STEPS))


async def test_the_smaller_groups_are_merged_into_other(tmp_path, make_client):
    events = team_events(4)
    client, _ = await make_team_client(make_client, tmp_path, events, max_breakdown_groups=2)
    teams = team_of(events, NOW + 1)
    reach = reference_reach(plain(events), STEPS, 3 * DAY, day_range_start(30), NOW + 1)
    entrants = Counter(teams[user] for user in reach)
    ranked = sorted(entrants, key=lambda team: (-entrants[team], team))
    breakdown = (await get(client, "/api/v1/funnel/ship", breakdown="team"))["breakdown"]
    assert [group["value"] for group in breakdown["groups"]] == [*ranked[:2], OTHER]
    assert breakdown["other_values"] == len(ranked) - 2
    other = breakdown["groups"][-1]
    assert other["users"] == sum(entrants[team] for team in ranked[2:])
    check_against_reference(other, {u: t for u, t in reach.items() if teams[u] in ranked[2:]}, len(STEPS))


async def test_hostile_values_are_answered_as_data(tmp_path, make_client):
    events = team_events(5)
    client, _ = await make_team_client(make_client, tmp_path, events)
    teams = team_of(events, NOW + 1)
    reach = reference_reach(plain(events), STEPS, 3 * DAY, day_range_start(30), NOW + 1)
    for value in HOSTILE:
        body = await get(client, "/api/v1/funnel/ship", filter=f"team:{value}")
        assert body["filters"] == {"team": [value]}
        check_against_reference(body, {u: t for u, t in reach.items() if teams[u] == value}, len(STEPS))
    # A value with a colon: the first colon ends the dimension's name.
    assert (await get(client, "/api/v1/funnel/ship", filter="team:a:b"))["filters"] == {"team": ["a:b"]}


async def test_bad_drilldown_parameters_are_400s_that_say_what_is_valid(tmp_path, make_client):
    client, _ = await make_team_client(make_client, tmp_path, team_events(6))
    cases = [
        ({"breakdown": "role"}, "invalid_breakdown", "dimensions: team"),
        ({"filter": "role:admin"}, "invalid_filter", "dimensions: team"),
        ({"filter": "team"}, "invalid_filter", "filter=team:payments"),
        ({"filter": "team:"}, "invalid_filter", "<dimension>:<value>"),
        ({"filter": ":payments"}, "invalid_filter", "<dimension>:<value>"),
        ({"filter": [f"team:t{k}" for k in range(11)]}, "invalid_filter", "at most 10"),
        ({"breakdown": ["team", "team"]}, "repeated_parameter", "give it once"),
    ]
    for path in ("/api/v1/funnel/ship", "/api/v1/user-segments", "/api/v1/retention", "/api/v1/lifecycle",
                 "/api/v1/usage-trends", "/api/v1/feature-adoption"):
        for params, code, words in cases:
            response = await client.get(path, params=[(name, value) for name, values in params.items()
                                                      for value in (values if isinstance(values, list) else [values])])
            assert response.status == 400, (path, params)
            error = (await response.json())["error"]
            assert error["code"] == code and words in error["message"], (path, error)
    # Ten filters are fine.
    await get(client, "/api/v1/funnel/ship", filter=[f"team:t{k}" for k in range(10)])


async def test_without_the_events_source_drilldowns_are_400s(make_client):
    client, _ = await make_client(dimensions=DIMENSIONS)  # Plausible only
    for path in ("/api/v1/usage-trends", "/api/v1/feature-adoption", "/api/v1/funnel/onboarding"):
        response = await client.get(path, params={"breakdown": "team"})
        assert response.status == 400, path
        assert "needs the identified events source" in (await response.json())["error"]["message"]


# --- the other sections: groups partition the users --------------------------------------------

async def test_segment_groups_partition_the_population(tmp_path, make_client):
    events = team_events(7)
    client, _ = await make_team_client(make_client, tmp_path, events)
    whole = await get(client, "/api/v1/user-segments", breakdown="team")
    teams = Counter(team_of(events, NOW + 1).values())
    groups = whole["breakdown"]["groups"]
    assert {group["value"]: group["users"] for group in groups} == teams
    assert {group["value"]: group["total_users"] for group in groups} == teams
    for k, segment in enumerate(whole["segments"]):
        assert sum(group["segments"][k]["user_count"] for group in groups) == segment["user_count"]
    # A group is the section filtered to its value.
    filtered = await get(client, "/api/v1/user-segments", filter="team:search")
    search = next(group for group in groups if group["value"] == "search")
    assert filtered["segments"] == search["segments"] and filtered["total_users"] == search["total_users"]


@pytest.mark.parametrize("path, params", [("/api/v1/retention", {"interval": "day", "time_range": "30d"}),
                                          ("/api/v1/retention", {"mode": "recurring"}),
                                          ("/api/v1/lifecycle", {"interval": "day"}),
                                          ("/api/v1/lifecycle", {"interval": "week", "time_range": "90d"})])
async def test_retention_and_lifecycle_groups_sum_to_the_whole(tmp_path, make_client, path, params):
    events = team_events(8)
    client, _ = await make_team_client(make_client, tmp_path, events)
    whole = await get(client, path, breakdown="team", **params)
    groups = whole["breakdown"]["groups"]
    assert len(groups) >= 5
    if path.endswith("retention"):
        for c, cohort in enumerate(whole["cohorts"]):
            assert sum(g["cohorts"][c]["size"] for g in groups) == cohort["size"]
            assert [sum(g["cohorts"][c]["retained"][k] for g in groups) for k in range(len(cohort["retained"]))] \
                == cohort["retained"]
    else:
        for i, interval in enumerate(whole["intervals"]):
            for status in ("new", "returning", "resurrecting", "dormant"):
                assert sum(g["intervals"][i][status] for g in groups) == interval[status]
        assert sum(g["stickiness"]["mau"] for g in groups) == whole["stickiness"]["mau"]
    for group in groups:
        filtered = await get(client, path, filter=f"team:{group['value']}", **params)
        key = "cohorts" if path.endswith("retention") else "intervals"
        assert filtered[key] == group[key], group["value"]


async def test_usage_and_feature_groups_count_the_teams_users(tmp_path, make_client):
    events = team_events(9)
    client, _ = await make_team_client(make_client, tmp_path, events)
    teams = team_of(events, NOW + 1)
    start = day_range_start(30)
    active = Counter(teams[user] for user in {user for user, _, ts, _ in events if ts >= start})
    deployers = Counter(teams[user] for user in {user for user, event, ts, _ in events
                                                 if event == DEPLOY_APPLICATION and ts >= start})

    usage = await get(client, "/api/v1/usage-trends", breakdown="team", time_range="30d")
    assert {g["value"]: g["active_users"] for g in usage["breakdown"]["groups"]} == active
    assert usage["active_users"] == sum(active.values()) and usage["basis"] == "identified_users"

    adoption = await get(client, "/api/v1/feature-adoption", breakdown="team", time_range="30d")
    for group in adoption["breakdown"]["groups"]:
        deploy = next(f for f in group["features"] if f["feature_name"] == "Deploy Application")
        assert group["users"] == active[group["value"]]
        assert deploy["unique_users"] == deployers[group["value"]]
        assert deploy["adoption_rate"] == pytest.approx(deployers[group["value"]] / active[group["value"]])

    filtered = await get(client, "/api/v1/feature-adoption", filter=["team:web", "team:data"], time_range="30d")
    deploy = next(f for f in filtered["features"] if f["feature_name"] == "Deploy Application")
    assert filtered["active_users"] == active["web"] + active["data"]
    assert deploy["unique_users"] == deployers["web"] + deployers["data"]
    pipeline = next(f for f in filtered["features"] if f["feature_name"] == "Run Pipeline")
    assert pipeline["unique_users"] == 0  # an event nobody selected did: zero, not null


async def test_metrics_publish_the_configured_breakdowns(tmp_path, make_client):
    events = team_events(10)
    client, service = await make_team_client(make_client, tmp_path, events, max_breakdown_groups=3,
                                             **{"metrics.breakdowns": ["team"]})
    await client.get("/metrics")  # the first scrape starts the refresh
    for area in service.areas.values():
        for params in area.metric_params():
            if area.disabled_reason() is None:
                await area.section(params)
    scraped = samples(await (await client.get("/metrics")).text())
    funnel = (await get(client, "/api/v1/funnel/ship", breakdown="team"))["breakdown"]["groups"]
    published = {labels: value for (name, labels), value in scraped.items()
                 if name == "analytics_breakdown_funnel_conversion_rate"}
    assert published == {(("dimension", "team"), ("funnel_name", "ship"), ("value", g["value"])):
                         pytest.approx(g["overall_conversion_rate"]) for g in funnel
                         if g["overall_conversion_rate"] is not None}
    assert len(funnel) == 4 and funnel[-1]["value"] == OTHER  # three groups, then (other)
    segment_values = {dict(labels)["value"] for (name, labels) in scraped if name == "analytics_breakdown_segment_size"}
    assert len(segment_values) == 4 and OTHER in segment_values
    active_values = Counter(dict(labels)["window"] for (name, labels) in scraped
                            if name == "analytics_breakdown_active_users")
    assert set(active_values) == {"1d", "7d", "30d"} and set(active_values.values()) == {4}
