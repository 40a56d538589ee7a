"""Funnels end to end: events file -> /api/v1/funnel/{name}, /api/v1/funnels and /metrics.

Expected numbers come from a plain per-user reference written here (loops over each user's
events, windowFunnel semantics with strictly increasing times), Wilson intervals from
statsmodels and time statistics from the ``statistics`` module.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from statsmodels.stats.proportion import proportion_confint

from exporter.config import ConfigError, load_config
from exporter.demo import catalog
from exporter.demo.events_file import write_events_file
from exporter.demo.plausible import build_plausible_app
from exporter.demo.population import generate_population
from exporter.events.file_loader import EventsFile
from tests.conftest import FakeClock
from tests.event_logs import reference_reach
from tests.fakes.events import Event, bump_mtime, read_events, write_events
from tests.fakes.plausible import API_KEY, SITE_ID

NOW_DT = datetime(2026, 5, 28, 15, 20, 11, tzinfo=timezone.utc)
NOW = int(NOW_DT.timestamp())
DAY = 86_400
TTL = 300.0  # the default cache TTL; data is dropped at twice it

STEPS = ("signup", "configure", "deploy")
FUNNEL = {"name": "trial", "description": "Sign up to first deploy", "window_seconds": 2 * DAY,
          "steps": [{"name": f"{s}_step", "event": f"app.{s}"} for s in STEPS]}


@pytest.fixture
def clock() -> FakeClock:  # also the service's clock in make_client
    return FakeClock(NOW)


# --- the reference -----------------------------------------------------------------------------

def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else float(values[0])


def check_against_reference(body: dict, reach: dict[str, list[int]], n_steps: int) -> None:
    entered = [sum(len(times) > k for times in reach.values()) for k in range(n_steps)]
    assert [s["users_entered"] for s in body["steps"]] == entered
    assert body["total_users"] == entered[0] and body["completed_users"] == entered[-1]
    for k, step in enumerate(body["steps"]):
        completed = entered[k + 1] if k + 1 < n_steps else entered[k]
        assert step["users_completed"] == completed
        if not entered[k] or k + 1 == n_steps:  # nobody there, or the last step: no next step
            assert step["completion_rate"] is None and step["completion_rate_ci"] is None
            assert step["drop_off_rate"] is None and step["avg_time_to_next_step"] is None
            continue
        assert step["completion_rate"] == pytest.approx(completed / entered[k])
        assert step["drop_off_rate"] == pytest.approx(1 - completed / entered[k])
        assert step["completion_rate_ci"] == pytest.approx(list(proportion_confint(completed, entered[k],
                                                                                   method="wilson")))
        gaps = [times[k + 1] - times[k] for times in reach.values() if len(times) > k + 1]
        if gaps:
            assert step["avg_time_to_next_step"] == pytest.approx(statistics.fmean(gaps))
            assert step["median_time_to_next_step"] == pytest.approx(statistics.median(gaps))
            assert step["p90_time_to_next_step"] == pytest.approx(p90(gaps))
        else:
            assert step["median_time_to_next_step"] is None
    totals = [times[-1] - times[0] for times in reach.values() if len(times) == n_steps]
    if totals:
        assert body["median_completion_time"] == pytest.approx(statistics.median(totals))
        assert body["avg_completion_time"] == pytest.approx(statistics.fmean(totals))
        assert body["overall_conversion_rate"] == pytest.approx(len(totals) / entered[0])


def day_range_start(days: int) -> int:
    """Start of a ``{days}d`` time range: UTC midnight ``days - 1`` days before today."""
    first = NOW_DT.date() - timedelta(days=days - 1)
    return int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp())


def random_events(seed: int, users: int = 120) -> list[Event]:
    """Attempts with ties, repeated steps, steps outside the window, several attempts, noise."""
    rng = random.Random(seed)
    events = []
    for u in range(users):
        user = f"u-{u:03d}"
        for _ in range(rng.randint(1, 3)):
            t = NOW - rng.randint(0, 12 * DAY)
            events.append(Event(user, f"app.{STEPS[0]}", t))
            for step in STEPS[1:]:
                if rng.random() < 0.3:
                    break
                t += rng.choice([0, 0, 1, 60, 3_600, DAY, 3 * DAY])  # ties and too-late steps
                events.append(Event(user, f"app.{step}", t))
                if rng.random() < 0.2:
                    events.append(Event(user, f"app.{step}", t + rng.randint(0, 600)))  # repeated
        events += [Event(user, "app.noise", NOW - rng.randint(0, 20 * DAY)) for _ in range(rng.randint(0, 3))]
    rng.shuffle(events)  # lines out of time order in the file
    return events


async def funnel_json(client, name: str, time_range: str = "30d") -> dict:
    response = await client.get(f"/api/v1/funnel/{name}", params={"time_range": time_range})
    assert response.status == 200, await response.text()
    return await response.json()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# --- ordered events ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_funnel_matches_the_per_user_reference_on_random_files(tmp_path, make_client, seed):
    events = random_events(seed)
    path = write_events(tmp_path / "events.jsonl", events)
    client, _ = await make_client(**{"events.path": str(path), "funnels": [FUNNEL]})
    for time_range, days in (("7d", 7), ("30d", 30)):
        body = await funnel_json(client, "trial", time_range)
        assert body["method"] == "ordered_events" and body["window_seconds"] == 2 * DAY
        assert body["incomplete_cohort"] is True  # the range ends now, less than a window ago
        reach = reference_reach(events, [f"app.{s}" for s in STEPS], 2 * DAY, day_range_start(days), NOW + 1)
        check_against_reference(body, reach, len(STEPS))


async def test_step_windows_from_the_configuration_apply(tmp_path, make_client):
    events = random_events(9)
    path = write_events(tmp_path / "events.jsonl", events)
    client, _ = await make_client(**{"events.path": str(path), "funnels": [FUNNEL | {"step_windows": [60, None]}]})
    body = await funnel_json(client, "trial")
    reach = reference_reach(events, [f"app.{s}" for s in STEPS], 2 * DAY, day_range_start(30), NOW + 1, [60, None])
    check_against_reference(body, reach, len(STEPS))
    assert all(times[1] - times[0] <= 60 for times in reach.values() if len(times) > 1)


@pytest.mark.parametrize("change, fragment", [
    ({"window_seconds": 400 * DAY}, "at most"),
    ({"step_windows": [60]}, "one entry per transition"),
    ({"steps": [{"name": "same", "event": "a"}, {"name": "same", "event": "b"}]}, "'same' is used more than once"),
    ({"steps": []}, "has no steps"),
])
def test_invalid_funnel_configuration_is_a_clear_error(change, fragment):
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"funnels": [FUNNEL | change]})
    assert "funnels[0]" in str(raised.value) and fragment in str(raised.value)


async def test_demo_population_funnels_match_the_reference(tmp_path, make_client):
    population = generate_population(42, now=NOW_DT)
    path = tmp_path / "events.jsonl.gz"
    write_events_file(population, path, upto=NOW)
    events = read_events(path)
    client, service = await make_client(**{"events.path": str(path)})
    for funnel in service.config.funnels:
        body = await funnel_json(client, funnel.name)
        reach = reference_reach(events, [s.event for s in funnel.steps], funnel.window_seconds,
                                day_range_start(30), NOW + 1)
        check_against_reference(body, reach, len(funnel.steps))
        assert body["completed_users"] > 0  # the population completes every default funnel


async def test_metrics_agree_with_the_json(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", random_events(4))
    client, _ = await make_client(**{"events.path": str(path), "funnels": [FUNNEL]})
    values = samples(await (await client.get("/metrics")).text())
    body = await funnel_json(client, "trial")
    funnel = (("funnel_name", "trial"),)
    assert values[("analytics_funnel_conversion_rate", funnel)] == body["overall_conversion_rate"]
    assert values[("analytics_funnel_median_completion_seconds", funnel)] == body["median_completion_time"]
    for step in body["steps"]:
        labels = (("funnel_name", "trial"), ("step", step["step_name"]))
        assert values[("analytics_funnel_step_users", labels)] == step["users_entered"]
        if step is body["steps"][-1]:  # no next step: no completion or drop-off series
            assert ("analytics_funnel_step_completion_rate", labels) not in values
            assert ("analytics_funnel_drop_off_rate", labels) not in values
            continue
        assert values[("analytics_funnel_step_completion_rate", labels)] == step["completion_rate"]
        assert values[("analytics_funnel_drop_off_rate", labels)] == step["drop_off_rate"]


async def test_several_funnel_windows_add_a_window_label(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", random_events(5))
    client, _ = await make_client(**{"events.path": str(path), "funnels": [FUNNEL],
                                     "metrics.funnel_windows": ["7d", "30d"]})
    values = samples(await (await client.get("/metrics")).text())
    for window in ("7d", "30d"):
        body = await funnel_json(client, "trial", window)
        labels = (("funnel_name", "trial"), ("window", window))
        assert values[("analytics_funnel_conversion_rate", labels)] == body["overall_conversion_rate"]
        first = (("funnel_name", "trial"), ("step", "signup_step"), ("window", window))
        assert values[("analytics_funnel_step_users", first)] == body["total_users"]


async def test_unknown_funnel_is_a_404_naming_the_configured_ones(tmp_path, make_client):
    path = write_events(tmp_path / "events.jsonl", random_events(6))
    client, _ = await make_client(**{"events.path": str(path)})
    response = await client.get("/api/v1/funnel/checkout")
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "unknown_funnel"
    assert "'checkout'" in error["message"] and "onboarding, deployment, service_creation" in error["message"]

    response = await client.get("/api/v1/funnel/onboarding", params={"time_range": "2w"})
    assert response.status == 400 and "1h, 6h, 24h, 7d, 30d, 90d" in (await response.json())["error"]["message"]
    response = await client.get("/api/v1/funnel/onboarding", params={"window": "7d"})
    assert response.status == 400 and (await response.json())["error"]["code"] == "unknown_parameter"


async def test_the_catalogue_lists_the_configured_funnels(make_client):
    client, _ = await make_client(**{"funnels": [FUNNEL]})
    body = await (await client.get("/api/v1/funnels")).json()
    assert body["funnels"] == [{"name": "trial", "description": "Sign up to first deploy", "window_seconds": 2 * DAY,
                                "steps": [{"name": f"{s}_step", "event": f"app.{s}", "goal": None} for s in STEPS]}]
    client, _ = await make_client()
    names = [(f["name"], f["window_seconds"]) for f in (await (await client.get("/api/v1/funnels")).json())["funnels"]]
    assert names == [("onboarding", 14 * DAY), ("deployment", DAY), ("service_creation", 7 * DAY)]
    assert (await client.get("/api/v1/funnels?x=1")).status == 400


async def test_a_changed_file_is_read_again_and_an_unchanged_one_is_not(tmp_path, make_client, monkeypatch, clock):
    parses = []  # the reads that found something to read: "full" or "append"
    real = EventsFile.refresh

    def counted(self, fingerprint=None):
        loaded = real(self, fingerprint)
        if loaded is not None:
            parses.append(loaded.kind)
        return loaded

    monkeypatch.setattr(EventsFile, "refresh", counted)
    events = random_events(7)
    path = write_events(tmp_path / "events.jsonl", events)
    client, _ = await make_client(**{"events.path": str(path), "funnels": [FUNNEL]})
    before = await funnel_json(client, "trial")
    assert (await client.post("/api/v1/metrics/refresh")).status == 200
    assert len(parses) == 1  # every area refreshed; the unchanged file was not parsed again

    newcomers = [Event(f"n-{i}", f"app.{step}", NOW - 3_600 + k) for i in range(5) for k, step in enumerate(STEPS)]
    write_events(path, events + newcomers)
    bump_mtime(path)
    clock.advance(30)  # forced refreshes are rate-limited (server.min_forced_refresh_seconds)
    assert (await client.post("/api/v1/metrics/refresh")).status == 200
    after = await funnel_json(client, "trial")
    assert parses == ["full", "append"]  # the file grew: only its new lines were read
    assert after["total_users"] == before["total_users"] + 5
    assert after["completed_users"] == before["completed_users"] + 5


async def test_events_source_down_answers_503_while_other_sources_keep_serving(tmp_path, make_client, clock):
    path = write_events(tmp_path / "events.jsonl", random_events(8))
    client, service = await make_client(**{"events.path": str(path), "funnels": [FUNNEL]})
    await funnel_json(client, "trial")
    path.unlink()

    clock.advance(TTL + 1)  # stale: served while a refresh runs in the background, and fails
    stale = await funnel_json(client, "trial")
    assert stale["stale"] is True
    key = service.areas["funnels"].key({"funnel_name": "trial", "time_range": service.config.metrics.funnel_ranges[0]})
    while service.memo.loading(key) is not None:
        await asyncio.sleep(0.01)
    health = await (await client.get("/health")).json()
    assert health["status"] == "degraded"
    assert health["sources"]["events"]["status"] == "down" and "does not exist" in health["sources"]["events"]["error"]

    clock.advance(TTL)  # past the hard limit: the data is dropped, not served
    for endpoint in ("/api/v1/funnel/trial", "/api/v1/user-segments"):
        response = await client.get(endpoint)
        assert response.status == 503
        error = (await response.json())["error"]
        assert error["code"] == "file_unreadable" and str(path) in error["message"]
    usage = await client.get("/api/v1/usage-trends")
    body = await usage.json()
    assert usage.status == 200 and body["sources"]["plausible"]["status"] == "up"
    assert body["basis"] == "plausible_visitors" and "identified_users_unavailable" in body["status_codes"]
    values = samples(await (await client.get("/metrics")).text())
    assert values[("analytics_source_up", (("source", "events"),))] == 0
    assert not any(name.startswith("analytics_funnel") for name, _ in values)


# --- without an events source: Plausible goals (aggregate_goals) ---------------------------------

GOAL_FUNNEL = {"name": "scaffold", "window_seconds": DAY, "steps": [
    {"name": "templates", "event": catalog.TEMPLATE_SELECTED, "goal": "Visit /create/templates"},
    {"name": "created", "event": catalog.SERVICE_CREATED, "goal": "Create Service"}]}


def goal_visitors(population, first: date, last: date) -> tuple[list[int], list[int]]:
    """Per step: visitors (person, day) of sessions that did goals 1..k, and of each goal alone."""
    p = population
    start = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp())
    end = int(datetime(last.year, last.month, last.day, tzinfo=timezone.utc).timestamp()) + DAY
    created = catalog.EVENT_NAMES.index(catalog.SERVICE_CREATED)
    templates = catalog.PAGES.index(catalog.CREATE_TEMPLATES)
    done = defaultdict(set)  # session -> goal indices
    visitors_of = defaultdict(set)  # session -> (person, day)
    for user, ts, name, page, session in zip(p.event_user.tolist(), p.event_ts.tolist(), p.event_name.tolist(),
                                             p.event_path.tolist(), p.event_session.tolist()):
        if not start <= ts < end or ts > NOW:
            continue
        visitors_of[session].add((user, ts // DAY))
        if name == 0 and page == templates:
            done[session].add(0)
        if name == created:
            done[session].add(1)
    same_session = [len(set().union(*(visitors_of[s] for s, goals in done.items() if set(range(k + 1)) <= goals)))
                    for k in range(2)]
    per_goal = [len({(u, ts // DAY) for u, ts, n, pg in zip(p.event_user.tolist(), p.event_ts.tolist(),
                                                              p.event_name.tolist(), p.event_path.tolist())
                     if start <= ts < end and ts <= NOW and (n == 0 and pg == templates if k == 0 else n == created)})
                for k in range(2)]
    return same_session, per_goal


@pytest.mark.parametrize("version", ["v2", "v1"])
async def test_without_events_funnels_fall_back_to_plausible_goals(aiohttp_server, make_client, clock, version):
    population = generate_population(42, now=NOW_DT)
    server = await aiohttp_server(build_plausible_app(population, api_key=API_KEY, site_id=SITE_ID, clock=clock))
    client, _ = await make_client(**{"sources.plausible.url": str(server.make_url("/")), "funnels": [GOAL_FUNNEL],
                                     "sources.plausible.api_version": version})
    body = await funnel_json(client, "scaffold", "7d")
    same_session, per_goal = goal_visitors(population, NOW_DT.date() - timedelta(days=6), NOW_DT.date())
    expected = same_session if version == "v2" else [per_goal[0], min(per_goal)]
    assert body["method"] == "aggregate_goals" and "Plausible goal counts" in body["method_note"]
    assert [step["users_entered"] for step in body["steps"]] == expected and expected[1] > 0
    assert body["overall_conversion_rate"] == pytest.approx(expected[1] / expected[0])
    assert body["steps"][0]["completion_rate_ci"] == pytest.approx(list(proportion_confint(expected[1], expected[0],
                                                                                           method="wilson")))
    assert body["median_completion_time"] is None and "timings_unavailable" in body["status_codes"]
    assert all(step[key] is None for step in body["steps"]
               for key in ("avg_time_to_next_step", "median_time_to_next_step", "p90_time_to_next_step"))
    assert body["sources"]["plausible"]["status"] == "up" and "events" not in body["sources"]
    values = samples(await (await client.get("/metrics")).text())
    assert values[("analytics_funnel_conversion_rate", (("funnel_name", "scaffold"),))] > 0


async def test_without_events_a_funnel_without_goals_is_a_503_naming_the_settings(make_client):
    client, _ = await make_client(**{"funnels": [FUNNEL]})
    response = await client.get("/api/v1/funnel/trial")
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert "EVENTS_PATH" in message
    assert all(f"funnels[0].steps[{i}].goal" in message for i in range(3))
    names = {name for name, _ in samples(await (await client.get("/metrics")).text())}
    assert not {name for name in names if name.startswith("analytics_funnel")}  # nothing to publish
    health = await (await client.get("/health")).json()
    assert health["sources"]["plausible"]["status"] == "up"  # a configuration gap is not an outage
