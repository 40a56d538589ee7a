"""Experiments through every layer: the simulated Experimentation Service (and a fault-injecting
fake) -> client -> engine -> ``GET /api/v1/experiment-results`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from statsmodels.stats import proportion  # not imported by name: pytest would collect test_*

from api.app import create_app
from devtools.processes import free_port
from exporter.cli import demo_overrides
from exporter.config import load_config
from exporter.demo.experimentation import DEMO_EXPERIMENTS, build_experimentation_app
from exporter.demo.runner import start_demo_upstreams
from exporter.service import AnalyticsService
from tests.fakes.experimentation import FakeExperimentation, experiment_record

SEED = 7
USERS = [f"user-{number:04d}" for number in range(2000)]
NAN_BUG_EXPERIMENT = "Catalog Quick Actions"  # its values are all 1.0: the upstream answers 500
LONG_STOPPED_EXPERIMENT = "Dark Mode by Default"  # stopped 75 days before "now"
RECENTLY_STOPPED_EXPERIMENT = "Pipeline Status Badges"  # stopped 9 days before "now"
PER_VARIANT_METRICS = {
    "analytics_experiment_conversions": "conversions", "analytics_experiment_conversion_rate": "conversion_rate",
    "analytics_experiment_assignments": "assignments", "analytics_experiment_relative_lift": "relative_lift",
    "analytics_experiment_p_value": "adjusted_p_value",
    "analytics_experiment_chance_to_beat_control": "chance_to_beat_control",
}
EXPERIMENT_METRICS = {*PER_VARIANT_METRICS, "analytics_active_experiments", "analytics_experiment_srm_p_value",
                      "analytics_experiment_recommendation", "analytics_experiment_info",
                      "analytics_experiments_significant"}
RECOMMENDATIONS = {"ship", "roll_back", "keep_running", "inconclusive", "insufficient_data", "investigate_srm",
                   "no_data", "no_comparison", "investigate_guardrail"}


def experimentation(url: str, **settings) -> dict:
    return {"sources.experimentation.url": url, "sources.experimentation.max_retries": 1,
            "sources.experimentation.timeout_seconds": 1.0,
            **{f"sources.experimentation.{key}": value for key, value in settings.items()}}


def strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def keyed(found: list) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in found}


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"


@pytest.fixture
async def demo_url(aiohttp_server, clock) -> str:
    """The simulated Experimentation Service, anchored at the service's "now"."""
    now = datetime.fromtimestamp(clock(), timezone.utc)
    app = build_experimentation_app(seed=SEED, now=now, user_ids=USERS, clock=clock)
    return str((await aiohttp_server(app)).make_url("/"))


async def upstream_view(url: str) -> dict[str, tuple[dict, dict | None]]:
    """Straight from the upstream: id -> (experiment record, /stats body or None when it fails)."""
    async with aiohttp.ClientSession(base_url=url) as session:
        async with session.get("/api/v1/experiments", params={"limit": "1000"}) as response:
            records = (await response.json())["experiments"]
        view = {}
        for record in records:
            async with session.get(f"/api/v1/experiments/{record['id']}/stats") as response:
                view[record["id"]] = (record, await response.json() if response.status == 200 else None)
    return view


async def test_demo_experiments_are_the_upstream_counts_analysed_here(make_client, demo_url):
    client, _ = await make_client(**experimentation(demo_url))
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 200
    body = strict_json(await response.text())
    assert body["time_range"] is None and body["sources"]["experimentation"]["status"] == "up"
    upstream = await upstream_view(demo_url)
    p_values_checked = 0
    assert sorted(e["experiment_id"] for e in body["experiments"]) == sorted(upstream)
    assert {record["name"] for record, stats in upstream.values() if stats is None} == {NAN_BUG_EXPERIMENT}

    for experiment in body["experiments"]:
        record, stats = upstream[experiment["experiment_id"]]
        assert (experiment["experiment_name"], experiment["status"], experiment["alpha"]) == (
            record["name"], record["status"], record["significance_level"])
        assert experiment["control"] == record["variants"][0]["name"]
        assert experiment["start_date"] == (record["started_at"] and record["started_at"] + "Z")
        assert experiment["end_date"] == (record["stopped_at"] and record["stopped_at"] + "Z")
        assert experiment["analysis_mode"] == ("sequential" if record["target_sample_size"] is None else "fixed")
        if stats is None:
            assert experiment["recommendation"] == "no_data" and experiment["status_codes"] == ["upstream_error"]
            assert [v["name"] for v in experiment["variants"]] == [v["name"] for v in record["variants"]]
            assert all(v["assignments"] is None for v in experiment["variants"])
            continue
        rows = experiment["variants"]
        assert [(v["name"], v["assignments"], v["conversions"]) for v in rows] == [
            (s["variant"], s["sample_size"], s["conversions"]) for s in stats["variants"]]
        total = sum(v["assignments"] for v in rows)
        weights = sum(v["allocation"] for v in record["variants"])
        for variant, configured in zip(rows, record["variants"]):
            expected = experiment["srm"]["expected"][variant["name"]]
            assert expected is None or expected == pytest.approx(total * configured["allocation"] / weights)
        if experiment["analysis_mode"] == "fixed" and len(rows) == 2 and rows[1]["p_value"] is not None:
            control, treatment = rows
            unpooled = proportion.test_proportions_2indep(treatment["conversions"], treatment["assignments"],
                                               control["conversions"], control["assignments"],
                                               method="wald", compare="diff")
            _, pooled = proportion.proportions_ztest([treatment["conversions"], control["conversions"]],
                                          [treatment["assignments"], control["assignments"]])
            assert treatment["p_value"] == pytest.approx(unpooled.pvalue, rel=1e-9, abs=1e-15)
            assert treatment["p_value_pooled"] == pytest.approx(pooled, rel=1e-9, abs=1e-15)
            p_values_checked += 1
    assert p_values_checked >= 4
    by_name = {e["experiment_name"]: e for e in body["experiments"]}
    assert by_name[RECENTLY_STOPPED_EXPERIMENT]["alpha"] == 0.01
    assert sum(e["recommendation"] == "no_data" for e in body["experiments"]
               if e["status"] != "draft") == 1  # only the NaN-bug experiment


async def test_demo_metrics_carry_every_experiment_metric_for_published_experiments_only(make_client, demo_url, clock):
    client, _ = await make_client(**experimentation(demo_url))
    response = await client.get("/metrics")
    assert response.status == 200
    found = samples(await response.text())
    assert EXPERIMENT_METRICS <= {s.name for s in found}
    assert all(math.isfinite(s.value) for s in found)
    body = strict_json(await (await client.get("/api/v1/experiment-results")).text())
    experiments = {e["experiment_id"]: e for e in body["experiments"]}
    now = datetime.fromtimestamp(clock(), timezone.utc)
    published = {i for i, e in experiments.items() if e["status"] == "running" or (
        e["status"] == "stopped" and now - datetime.fromisoformat(e["end_date"]) <= timedelta(days=30))}
    names = {e["experiment_name"]: i for i, e in experiments.items()}
    assert names[RECENTLY_STOPPED_EXPERIMENT] in published and names[NAN_BUG_EXPERIMENT] in published
    assert names[LONG_STOPPED_EXPERIMENT] not in published

    labelled = {s.labels["experiment_id"] for s in found if "experiment_id" in s.labels}
    assert labelled == published
    value = keyed(found)
    assert value[("analytics_active_experiments", ())] == sum(e["status"] == "running" for e in experiments.values())
    assert value[("analytics_experiments_significant", ())] == sum(
        experiments[i]["recommendation"] in ("ship", "roll_back") for i in published)
    assert value[("analytics_source_up", (("source", "experimentation"),))] == 1.0  # one 500 is not an outage
    for experiment_id in published:
        experiment = experiments[experiment_id]
        states = {s.labels["recommendation"]: s.value for s in found
                  if s.name == "analytics_experiment_recommendation" and s.labels["experiment_id"] == experiment_id}
        assert set(states) == RECOMMENDATIONS and states[experiment["recommendation"]] == 1.0
        assert sum(states.values()) == 1
        info = [s.labels for s in found
                if s.name == "analytics_experiment_info" and s.labels["experiment_id"] == experiment_id]
        assert info == [{"experiment_id": experiment_id, "name": experiment["experiment_name"],
                         "status": experiment["status"], "control": experiment["control"]}]
        for variant in experiment["variants"]:
            for metric, field in PER_VARIANT_METRICS.items():
                key = (metric, (("experiment_id", experiment_id), ("variant", variant["name"])))
                assert value.get(key) == variant[field]  # absent exactly when the JSON says null


def fake_with_stopped_ages(clock) -> FakeExperimentation:
    """Running, stopped 29.9 and 30.1 days ago, and a draft; same counts for each."""
    now = datetime.fromtimestamp(clock(), timezone.utc).replace(tzinfo=None)
    records = [experiment_record(1, started_at=now - timedelta(days=40)),
               experiment_record(2, status="stopped", started_at=now - timedelta(days=60),
                                 stopped_at=now - timedelta(days=29.9)),
               experiment_record(3, status="stopped", started_at=now - timedelta(days=60),
                                 stopped_at=now - timedelta(days=30.1)),
               experiment_record(4, status="draft", target_sample_size=None)]
    counts = {r["id"]: [(1200, 240), (1180, 300)] for r in records}
    counts[records[3]["id"]] = [(0, 0), (0, 0)]
    return FakeExperimentation(records, counts)


async def test_experiments_stopped_more_than_30_days_ago_have_no_series(make_client, aiohttp_server, clock):
    fake = fake_with_stopped_ages(clock)
    client, _ = await make_client(**experimentation(str((await aiohttp_server(fake.app())).make_url("/"))))
    found = samples(await (await client.get("/metrics")).text())
    labelled = {s.labels["experiment_id"] for s in found if "experiment_id" in s.labels}
    assert labelled == {fake.experiments[0]["id"], fake.experiments[1]["id"]}
    body = strict_json(await (await client.get("/api/v1/experiment-results")).text())
    assert len(body["experiments"]) == 4  # the JSON lists every experiment


async def test_the_500_bug_leaves_every_other_experiment_unchanged(make_client, aiohttp_server, clock):
    healthy, buggy = fake_with_stopped_ages(clock), fake_with_stopped_ages(clock)
    bug_id = buggy.experiments[1]["id"]
    buggy.stats_faults = {bug_id: "500"}
    bodies = []
    for fake in (healthy, buggy):
        client, _ = await make_client(**experimentation(str((await aiohttp_server(fake.app())).make_url("/"))))
        response = await client.get("/api/v1/experiment-results")
        bodies.append({e["experiment_id"]: e for e in strict_json(await response.text())["experiments"]})
    before, after = bodies
    assert after[bug_id]["recommendation"] == "no_data" and after[bug_id]["status_codes"] == ["upstream_error"]
    assert after[bug_id]["srm"]["level"] == "not_computable" and after[bug_id]["p_value"] is None
    assert {i: e for i, e in after.items() if i != bug_id} == {i: e for i, e in before.items() if i != bug_id}
    # The upstream's own verdict (p = 0.0001, "Winner") is ignored: the p-value is ours, for these counts.
    treatment = before[bug_id]["variants"][1]
    reference = proportion.test_proportions_2indep(300, 1180, 240, 1200, method="wald", compare="diff").pvalue
    assert treatment["p_value"] == pytest.approx(reference, rel=1e-9)


async def test_status_filter(make_client, aiohttp_server, clock):
    fake = fake_with_stopped_ages(clock)
    client, _ = await make_client(**experimentation(str((await aiohttp_server(fake.app())).make_url("/"))))
    body = await (await client.get("/api/v1/experiment-results?status=stopped")).json()
    assert [e["status"] for e in body["experiments"]] == ["stopped", "stopped"]
    assert fake.list_queries[-1]["status"] == "stopped"
    for bad in ("paused", "RUNNING", ""):
        response = await client.get("/api/v1/experiment-results", params={"status": bad})
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "invalid_status" and "valid: draft, running, stopped" in error["message"]


@pytest.mark.parametrize("outage", ["connection_refused", "503html"])
async def test_experimentation_down_is_a_503_and_source_up_0_while_plausible_series_remain(
        make_client, aiohttp_server, outage):
    if outage == "connection_refused":
        url = closed_port_url()
    else:
        url = str((await aiohttp_server(FakeExperimentation([], {}, fault="503html").app())).make_url("/"))
    client, _ = await make_client(**experimentation(url))
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 503
    error = strict_json(await response.text())["error"]
    assert error["code"] == {"connection_refused": "connection_error", "503html": "upstream_unavailable"}[outage]
    assert error["message"].startswith("source experimentation:") and "<html>" not in error["message"]

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    found = samples(await metrics.text())
    value = keyed(found)
    assert value[("analytics_source_up", (("source", "experimentation"),))] == 0.0
    assert value[("analytics_source_up", (("source", "plausible"),))] == 1.0
    assert ("analytics_active_users", (("window", "7d"),)) in value
    assert not {s.name for s in found} & EXPERIMENT_METRICS
    health = await (await client.get("/health")).json()
    assert health["sources"]["experimentation"]["status"] == "down" and health["status"] == "degraded"


async def test_disabled_source_names_the_setting(make_client):
    client, _ = await make_client(**{"sources.experimentation.url": None})
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "source_disabled" and "EXPERIMENTATION_URL" in error["message"]
    found = samples(await (await client.get("/metrics")).text())
    assert not {s.name for s in found} & EXPERIMENT_METRICS
    assert not any(s.labels.get("source") == "experimentation" for s in found)


async def test_concurrent_scrapes_and_requests_never_exceed_max_concurrency(make_client, aiohttp_server):
    fake = FakeExperimentation([experiment_record(n, status=("running", "stopped", "draft")[n % 3])
                                for n in range(1, 22)], {}, latency_s=0.02)
    fake.counts = {r["id"]: [(150, 30), (150, 33)] for r in fake.experiments}
    client, _ = await make_client(**experimentation(str((await aiohttp_server(fake.app())).make_url("/")),
                                                    max_concurrency=4))
    paths = ["/metrics", "/api/v1/experiment-results", "/api/v1/experiment-results?status=running",
             "/api/v1/experiment-results?status=stopped", "/api/v1/experiment-results?status=draft", "/metrics"]
    responses = await asyncio.gather(*(client.get(path) for path in paths))
    assert [r.status for r in responses] == [200] * len(paths)
    assert 1 < fake.max_in_flight <= 4


async def test_demo_mode_serves_the_simulated_experiments_through_the_same_client(aiohttp_client, tmp_path):
    demo = await start_demo_upstreams(workdir=tmp_path)
    try:
        service = AnalyticsService(load_config(environ={}, overrides=demo_overrides(demo)))
        client = await aiohttp_client(create_app(service))
        body = strict_json(await (await client.get("/api/v1/experiment-results")).text())
        # The demo's events also expose users to an experiment the service does not list (events_only).
        by_name = {e["experiment_name"]: e for e in body["experiments"] if e["status"] != "events_only"}
        assert set(by_name) == {plan.name for plan in DEMO_EXPERIMENTS}
        assert by_name[NAN_BUG_EXPERIMENT]["recommendation"] == "no_data"
        assert by_name[NAN_BUG_EXPERIMENT]["status_codes"] == ["upstream_error"]
        assert all(v["assignments"] > 0 for name, e in by_name.items() if e["status"] != "draft"
                   and name != NAN_BUG_EXPERIMENT for v in e["variants"])
        found = keyed(samples(await (await client.get("/metrics")).text()))
        assert found[("analytics_source_up", (("source", "experimentation"),))] == 1.0
        assert found[("analytics_active_experiments", ())] == sum(e["status"] == "running" for e in by_name.values())
    finally:
        await demo.close()
