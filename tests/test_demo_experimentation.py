"""The simulated Experimentation Service against the upstream contract (docs/upstreams.md#experimentation-service).

Shapes and quirks are checked over real HTTP; every ``/stats`` number is recomputed here from the
simulated rows with statistics, scipy and statsmodels.
"""

from __future__ import annotations

import math
import re
import statistics
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from exporter.demo.experimentation import (
    build_experimentation_app,
    simulate_experiments,
)
from tests.conftest import FakeClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
USERS = [f"u-{number:04d}" for number in range(1, 301)]  # the population's default size
SEED = 7

EXPERIMENT_KEYS = {"id", "name", "description", "hypothesis", "status", "variants", "metrics",
                   "target_sample_size", "significance_level", "traffic_allocation",
                   "created_at", "started_at", "stopped_at"}
STATS_KEYS = {"experiment_id", "experiment_name", "status", "variants", "control_variant",
              "winner", "statistical_significance", "p_value", "confidence_level",
              "effect_size", "recommendation", "sample_size_per_variant", "total_conversions"}
VARIANT_STATS_KEYS = {"variant", "sample_size", "conversions", "conversion_rate", "mean_value",
                      "std_dev", "confidence_interval"}
NAIVE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?")
NAN_BUG_EXPERIMENT = "Catalog Quick Actions"


def build(seed: int = SEED, clock=None, latency_s: float = 0.0):
    return build_experimentation_app(seed=seed, now=NOW, user_ids=USERS,
                                     clock=clock or FakeClock(1_000.0), latency_s=latency_s)


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(build())


async def list_all(client, **params) -> list[dict]:
    """The client strategy (docs/upstreams.md#experimentation-service): a large page, skip while
    skip < total, dedupe."""
    collected: dict[str, dict] = {}
    skip = 0
    while True:
        response = await client.get("/api/v1/experiments",
                                    params={"skip": skip, "limit": 1000, **params})
        assert response.status == 200
        body = await response.json()
        collected.update((e["id"], e) for e in body["experiments"])
        skip += body["limit"]
        if skip >= body["total"]:
            return list(collected.values())


async def by_name(client) -> dict[str, dict]:
    return {e["name"]: e for e in await list_all(client)}


async def stats_of(client, experiment_id: str) -> dict:
    response = await client.get(f"/api/v1/experiments/{experiment_id}/stats")
    assert response.status == 200
    return await response.json()


@pytest.mark.parametrize("latency_s", [0.0, 0.01])
async def test_health(aiohttp_client, latency_s):
    client = await aiohttp_client(build(latency_s=latency_s))
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "healthy", "service": "experimentation"}


async def test_list_is_an_object_with_upstream_experiment_shape(client):
    response = await client.get("/api/v1/experiments")
    body = await response.json()
    assert set(body) == {"experiments", "total", "skip", "limit"}
    assert (body["skip"], body["limit"], body["total"]) == (0, 100, len(body["experiments"]))
    assert 8 <= body["total"] <= 12
    for experiment in body["experiments"]:
        assert set(experiment) == EXPERIMENT_KEYS
        assert str(uuid.UUID(experiment["id"])) == experiment["id"]
        assert experiment["status"] in {"draft", "running", "stopped"}
        assert experiment["metrics"] and all(isinstance(m, str) for m in experiment["metrics"])
        assert [set(v) for v in experiment["variants"]] == [{"name", "allocation", "config"}] * len(
            experiment["variants"])
        assert math.isclose(sum(v["allocation"] for v in experiment["variants"]), 1.0)
        assert 0 < experiment["traffic_allocation"] <= 1
        for field in ("created_at", "started_at", "stopped_at"):
            value = experiment[field]
            if value is not None:
                assert NAIVE_TIMESTAMP.fullmatch(value), value
                assert datetime.fromisoformat(value).tzinfo is None
    alphas = {e["significance_level"] for e in body["experiments"]}
    assert alphas == {0.05, 0.01}


async def test_paging_until_skip_reaches_total_collects_each_experiment_once(client):
    experiments = await list_all(client)
    expected = {e.id for e in simulate_experiments(seed=SEED, now=NOW, user_ids=USERS)}
    assert sorted(e["id"] for e in experiments) == sorted(expected)


async def test_order_changes_between_requests(client):
    orders = set()
    for _ in range(3):
        body = await (await client.get("/api/v1/experiments")).json()
        orders.add(tuple(e["id"] for e in body["experiments"]))
    assert len(orders) > 1


async def test_small_pages_over_a_shuffled_list_can_repeat_or_miss_items(client):
    """The hazard the real client must avoid: per-request order makes small pages unreliable."""
    total = (await (await client.get("/api/v1/experiments")).json())["total"]
    imperfect_passes = 0
    for _ in range(10):
        seen = []
        for skip in range(0, total, 3):
            page = await (await client.get("/api/v1/experiments",
                                           params={"skip": skip, "limit": 3})).json()
            seen += [e["id"] for e in page["experiments"]]
        imperfect_passes += len(set(seen)) < total
    assert imperfect_passes > 0


async def test_status_filter_is_an_exact_match(client):
    every = await list_all(client)
    running = await list_all(client, status="running")
    assert running and all(e["status"] == "running" for e in running)
    assert len(running) == sum(e["status"] == "running" for e in every)
    assert await list_all(client, status="Running") == []
    assert len(await list_all(client, status="")) == len(every)  # empty means no filter


async def test_get_one_experiment_and_404(client):
    for experiment in await list_all(client):
        response = await client.get(f"/api/v1/experiments/{experiment['id']}")
        assert await response.json() == experiment
    missing = await client.get(f"/api/v1/experiments/{uuid.uuid4()}")
    assert missing.status == 404
    assert await missing.json() == {"detail": "Experiment not found"}
    missing_stats = await client.get(f"/api/v1/experiments/{uuid.uuid4()}/stats")
    assert missing_stats.status == 404
    assert (await missing_stats.json())["detail"] == "Experiment not found or insufficient data"


async def test_stats_answer_500_in_plain_text_only_for_the_all_equal_values_experiment(client):
    for experiment in await list_all(client):
        response = await client.get(f"/api/v1/experiments/{experiment['id']}/stats")
        if experiment["name"] == NAN_BUG_EXPERIMENT:
            assert response.status == 500
            assert response.content_type == "text/plain"
            assert await response.text() == "Internal Server Error"
        else:
            assert response.status == 200, experiment["name"]
            body = await response.json()
            assert set(body) == STATS_KEYS
            assert [set(v) for v in body["variants"]] == [VARIANT_STATS_KEYS] * len(
                experiment["variants"])
            assert [v["variant"] for v in body["variants"]] == [
                v["name"] for v in experiment["variants"]]


def recompute_arm(simulated, arm: int, at: datetime):
    """Sample size, converted users and metric values of one arm, straight from the rows."""
    cutoff = at.timestamp()
    sample_size = sum(1 for variant, when in zip(simulated.assigned_variant, simulated.assigned_at)
                      if variant == arm and when <= cutoff)
    rows = [(user, value) for user, variant, when, is_metric, value in zip(
        simulated.event_user, simulated.event_variant, simulated.event_at,
        simulated.event_is_metric, simulated.event_value)
        if variant == arm and when <= cutoff and is_metric]
    return sample_size, len({user for user, _ in rows}), [float(value) for _, value in rows]


def t_interval(values: list[float]) -> tuple[float, float]:
    mean, sd, m = statistics.fmean(values), statistics.stdev(values), len(values)
    half = stats.t.ppf(0.975, m - 1) * sd / math.sqrt(m)
    return mean - half, mean + half


def test_the_nan_experiment_has_an_arm_whose_metric_values_are_all_equal():
    simulated = {s.plan.name: s for s in simulate_experiments(seed=SEED, now=NOW, user_ids=USERS)}
    for name, experiment in simulated.items():
        arms = [recompute_arm(experiment, arm, NOW)[2]
                for arm in range(len(experiment.plan.variants))]
        has_flat_arm = any(len(values) >= 2 and len(set(values)) == 1 for values in arms)
        assert has_flat_arm == (name == NAN_BUG_EXPERIMENT), name


async def test_stats_numbers_match_an_independent_recomputation(client):
    simulated = {s.id: s for s in simulate_experiments(seed=SEED, now=NOW, user_ids=USERS)}
    for experiment in await list_all(client):
        if experiment["name"] == NAN_BUG_EXPERIMENT:
            continue
        body = await stats_of(client, experiment["id"])
        rows = simulated[experiment["id"]]
        arms = [recompute_arm(rows, arm, NOW) for arm in range(len(experiment["variants"]))]

        for reported, (n, x, values) in zip(body["variants"], arms):
            assert (reported["sample_size"], reported["conversions"]) == (n, x)
            assert reported["conversion_rate"] == pytest.approx(x / n if n else 0.0, rel=1e-12)
            if len(values) >= 2:
                assert reported["mean_value"] == pytest.approx(statistics.fmean(values), rel=1e-9)
                assert reported["std_dev"] == pytest.approx(statistics.stdev(values), rel=1e-9)
                assert reported["confidence_interval"] == pytest.approx(t_interval(values),
                                                                        rel=1e-9)
            else:
                assert reported["confidence_interval"] == [reported["mean_value"]] * 2

        # Pooled two-proportion z-test of each treatment against the control; the upstream
        # reports the smallest p-value (1.0 when nothing can be tested).
        control_n, control_x, _ = arms[0]
        p_values = [proportions_ztest([x, control_x], [n, control_n])[1]
                    for n, x, _ in arms[1:]
                    if n and control_n and 0 < x + control_x < n + control_n]
        assert body["p_value"] == pytest.approx(min(p_values, default=1.0), rel=1e-6, abs=1e-12)
        alpha = experiment["significance_level"]
        assert body["statistical_significance"] == (body["p_value"] < alpha)
        assert body["confidence_level"] == pytest.approx(1 - alpha)
        assert body["control_variant"] == experiment["variants"][0]["name"]
        assert body["total_conversions"] == sum(x for _, x, _ in arms)
        assert body["sample_size_per_variant"] == sum(n for n, _, _ in arms) // len(arms)
        if body["winner"] is not None:
            index = [v["name"] for v in experiment["variants"]].index(body["winner"])
            n, x, _ = arms[index]
            assert x / n > control_x / control_n
            assert body["effect_size"] == pytest.approx((x / n - control_x / control_n)
                                                        / (control_x / control_n), rel=1e-9)
        else:
            assert body["effect_size"] == 0.0
        assert body["recommendation"].startswith(expected_recommendation_start(
            experiment["status"], min(n for n, _, _ in arms), body))


def expected_recommendation_start(status: str, smallest_arm: int, body: dict) -> str:
    """The upstream's recommendation rules, first match wins."""
    if status == "draft":
        return "Experiment is in 'draft' state."
    if smallest_arm < 100:
        return ("Continue running. Need more data "
                f"(minimum 100 samples per variant, currently {smallest_arm}).")
    if not body["statistical_significance"]:
        return f"No significant difference {'yet' if smallest_arm < 1000 else 'detected'} (p="
    if body["winner"] is None:
        return "Significant difference found"
    return f"✅ Winner: {body['winner']} "


@pytest.mark.parametrize("seed", [SEED, 11])
async def test_demo_scenarios(aiohttp_client, seed):
    client = await aiohttp_client(build(seed=seed))
    experiments = await by_name(client)
    statuses = {name: e["status"] for name, e in experiments.items()}
    assert set(statuses.values()) == {"draft", "running", "stopped"}

    def arms(body):
        return {v["variant"]: v for v in body["variants"]}

    winner = experiments["New Onboarding Flow"]
    body = await stats_of(client, winner["id"])
    assert body["winner"] == "guided-tour" and body["statistical_significance"]
    assert min(v["sample_size"] for v in body["variants"]) >= winner["target_sample_size"]

    loser = experiments["One-Click Deploy Button"]
    body = await stats_of(client, loser["id"])
    control, treatment = body["variants"]
    assert treatment["conversion_rate"] < control["conversion_rate"]
    assert body["p_value"] < loser["significance_level"] and body["winner"] is None

    short = experiments["TechDocs Search Ranking"]
    body = await stats_of(client, short["id"])
    assert short["status"] == "running" and not body["statistical_significance"]
    assert min(v["sample_size"] for v in body["variants"]) < short["target_sample_size"]

    assert len(experiments["Template Gallery Layout"]["variants"]) == 3

    mismatch = experiments["Service Catalog Search Autocomplete"]
    counts = [arms(await stats_of(client, mismatch["id"]))[v["name"]]["sample_size"]
              for v in mismatch["variants"]]
    weights = np.array([v["allocation"] for v in mismatch["variants"]])
    assert stats.chisquare(counts, weights * sum(counts)).pvalue < 0.001

    def age(timestamp: str) -> timedelta:
        return NOW - datetime.fromisoformat(timestamp).replace(tzinfo=timezone.utc)

    recent, old = experiments["Pipeline Status Badges"], experiments["Dark Mode by Default"]
    assert recent["status"] == old["status"] == "stopped"
    assert age(recent["stopped_at"]) < timedelta(days=30) < age(old["stopped_at"])
    assert recent["significance_level"] == 0.01

    draft = experiments["AI Assistant Sidebar"]
    assert draft["status"] == "draft" and draft["started_at"] is None
    assert all(v["sample_size"] == 0 for v in (await stats_of(client, draft["id"]))["variants"])

    assert experiments["Cost Insights Panel"]["target_sample_size"] is None


async def test_clock_reveals_later_enrolments_of_running_experiments_only(aiohttp_client):
    clock = FakeClock(1_000.0)
    client = await aiohttp_client(build(clock=clock))
    experiments = await by_name(client)
    running, stopped = experiments["New Onboarding Flow"], experiments["Pipeline Status Badges"]
    before = [await stats_of(client, e["id"]) for e in (running, stopped)]
    clock.advance(7 * 86400)
    after = [await stats_of(client, e["id"]) for e in (running, stopped)]
    for earlier, later in zip(before[0]["variants"], after[0]["variants"]):
        assert later["sample_size"] > earlier["sample_size"]
        assert later["conversions"] >= earlier["conversions"]
    assert after[1] == before[1]


async def test_same_seed_same_data_other_seed_other_ids(aiohttp_client):
    first, again, other = [await aiohttp_client(build(seed=seed)) for seed in (SEED, SEED, 8)]
    first_experiments, again_experiments = await by_name(first), await by_name(again)
    assert first_experiments == again_experiments
    name = "Template Gallery Layout"
    assert (await stats_of(first, first_experiments[name]["id"])
            == await stats_of(again, again_experiments[name]["id"]))
    assert {e["id"] for e in (await by_name(other)).values()}.isdisjoint(
        e["id"] for e in first_experiments.values())


async def test_bad_paging_parameters_fail_like_the_upstream(client):
    response = await client.get("/api/v1/experiments", params={"skip": "abc", "limit": "x"})
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert [(e["type"], e["loc"]) for e in detail] == [("int_parsing", ["query", "skip"]),
                                                        ("int_parsing", ["query", "limit"])]
    negative = await client.get("/api/v1/experiments", params={"skip": -1})
    assert negative.status == 500 and await negative.text() == "Internal Server Error"


async def test_unknown_paths_get_fastapi_bodies(client):
    response = await client.get("/api/v2/experiments")
    assert response.status == 404
    assert await response.json() == {"detail": "Not Found"}
    response = await client.post("/health")
    assert response.status == 405
    assert await response.json() == {"detail": "Method Not Allowed"}
