"""The Experimentation Service client against fakes on loopback: paging over a shuffled list, the
status filter, field mapping, per-experiment failures (the 500 bug, 404, malformed stats),
service-wide failures, and the concurrency it allows itself towards the upstream."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from aiohttp import web

from devtools.processes import free_port
from exporter.config import ExperimentationConfig
from exporter.errors import SourceError
from exporter.health import HealthRegistry
from exporter.sources.experimentation import ExperimentationClient
from tests.fakes.experimentation import FakeExperimentation, experiment_record


def make_fake(count: int, **options) -> FakeExperimentation:
    records = [experiment_record(number) for number in range(1, count + 1)]
    counts = {r["id"]: [(200 + number, 40 + number), (210 + number, 50 + number)]
              for number, r in enumerate(records, start=1)}
    return FakeExperimentation(records, counts, **options)


@pytest.fixture
async def connect(aiohttp_server):
    """``await connect(fake or app, **config)`` -> a client for it, closed after the test."""
    clients = []

    async def make(upstream, page_size: int | None = None, **config) -> ExperimentationClient:
        app = upstream if isinstance(upstream, web.Application) else upstream.app()
        server = await aiohttp_server(app)
        settings = {"url": str(server.make_url("/")), "timeout_seconds": 1.0, "max_retries": 1} | config
        health = HealthRegistry()
        health.register("experimentation")
        extra = {} if page_size is None else {"page_size": page_size}
        client = ExperimentationClient(ExperimentationConfig(**settings), health, **extra)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def ids(experiments) -> list[str]:
    return [e.experiment_id for e in experiments]


async def test_one_large_page_when_the_list_fits(connect):
    fake = make_fake(12)
    client = await connect(fake)
    experiments = await client.list_experiments()
    assert sorted(ids(experiments)) == sorted(r["id"] for r in fake.experiments)
    assert fake.list_queries == [{"skip": "0", "limit": "1000"}]


@pytest.mark.parametrize("seed", range(6))
async def test_paging_over_a_shuffled_list_collects_every_experiment_exactly_once(connect, seed):
    fake = make_fake(10, seed=seed)
    client = await connect(fake, page_size=3)
    experiments = await client.list_experiments()
    assert len(experiments) == len(set(ids(experiments))) == 10
    assert set(ids(experiments)) == {r["id"] for r in fake.experiments}
    skips = [int(q["skip"]) for q in fake.list_queries]
    assert skips[:4] == [0, 3, 6, 9]  # skip grows while skip < total
    # With each of these seeds the order changes enough that four pages of three miss some
    # experiments (and repeat others); the client then reads everything in one page.
    assert fake.list_queries[4:] == [{"skip": "0", "limit": "10"}]


async def test_skip_advances_by_what_the_server_sent_not_by_the_limit(connect):
    fake = make_fake(10, max_limit=4, shuffle=False)
    client = await connect(fake)
    experiments = await client.list_experiments()
    assert len(experiments) == 10
    assert [q["skip"] for q in fake.list_queries] == ["0", "4", "8"]


async def test_status_filter_is_asked_of_the_upstream(connect):
    fake = make_fake(0)
    fake.experiments = [experiment_record(n, status=s) for n, s in enumerate(["running", "stopped", "draft",
                                                                              "stopped"], start=1)]
    client = await connect(fake)
    stopped = await client.list_experiments("stopped")
    assert {e.status for e in stopped} == {"stopped"} and len(stopped) == 2
    assert fake.list_queries[-1]["status"] == "stopped"
    assert len(await client.list_experiments()) == 4 and "status" not in fake.list_queries[-1]


async def test_fields_map_to_the_analysis_and_naive_timestamps_are_utc(connect):
    started, stopped = datetime(2026, 10, 3, 8, 15, 30, 123456), datetime(2026, 11, 2, 17, 0)
    record = experiment_record(1, status="stopped", arms=(("control", 0.34), ("a", 0.33), ("b", 0.33)),
                               target_sample_size=5000, significance_level=0.01,
                               started_at=started, stopped_at=stopped)
    sequential = experiment_record(2, target_sample_size=None, significance_level=None)
    fake = FakeExperimentation([record, sequential], {record["id"]: [(300, 30), (310, 41), (290, 29)],
                                                      sequential["id"]: [(100, 10), (100, 12)]})
    client = await connect(fake)
    first, second = await client.read_experiments()
    one = first.experiment
    assert one.start_date == started.replace(tzinfo=timezone.utc)
    assert one.end_date == stopped.replace(tzinfo=timezone.utc) and one.end_date.tzinfo is not None
    assert [(a.name, a.weight) for a in one.arms] == [("control", 0.34), ("a", 0.33), ("b", 0.33)]
    assert first.counts == {"control": (300, 30), "a": (310, 41), "b": (290, 29)}
    assert (one.alpha, one.planned_n_per_arm) == (0.01, 5000)
    two = second.experiment
    assert (two.alpha, two.planned_n_per_arm, two.start_date, two.end_date) == (0.05, None, None, None)


async def test_one_failing_stats_call_makes_only_that_experiment_unavailable(connect):
    fake = make_fake(6)
    bug, gone, garbled = (r["id"] for r in fake.experiments[:3])
    fake.stats_faults = {bug: "500", gone: "404", garbled: "malformed"}
    client = await connect(fake)
    readings = {r.experiment.experiment_id: r for r in await client.read_experiments()}
    assert {i: (r.counts, r.problem) for i, r in readings.items() if r.problem} == {
        bug: (None, "upstream_error"), gone: (None, "not_found"), garbled: (None, "invalid_response")}
    for record in fake.experiments[3:]:
        reading = readings[record["id"]]
        assert reading.problem is None
        assert [reading.counts[arm.name] for arm in reading.experiment.arms] == fake.counts[record["id"]]
    # The HTTP errors are still counted per outcome; the 500 is not retried (it is deterministic).
    requests = client.health.sources["experimentation"].requests
    assert requests["server_error"] == fake.stats_requests[bug] == 1 and requests["client_error"] == 1


async def test_stats_that_do_not_list_the_configured_variants(connect):
    fake = make_fake(2)
    fake.counts[fake.experiments[0]["id"]] = [(100, 10)]  # the treatment is missing
    client = await connect(fake)
    readings = {r.experiment.experiment_id: r.problem for r in await client.read_experiments()}
    assert readings == {fake.experiments[0]["id"]: "variants_mismatch", fake.experiments[1]["id"]: None}


@pytest.mark.parametrize(("fault", "code"), [("503html", "upstream_unavailable"), ("malformed", "invalid_response"),
                                             ("hang", "timeout")])
async def test_a_failing_service_fails_the_whole_read(connect, fault, code):
    client = await connect(make_fake(3, fault=fault), timeout_seconds=0.2, max_retries=0)
    with pytest.raises(SourceError) as raised:
        await client.read_experiments()
    assert raised.value.code == code and raised.value.source == "experimentation"
    assert "<html>" not in str(raised.value)


async def test_a_dropped_connection_during_stats_fails_the_whole_read(connect):
    fake = make_fake(5)
    fake.stats_faults = {fake.experiments[2]["id"]: "disconnect"}
    client = await connect(fake, max_retries=0)
    with pytest.raises(SourceError) as raised:
        await client.read_experiments()
    assert raised.value.code == "connection_error"


async def test_connection_refused(connect):
    client = await connect(make_fake(0), url=f"http://127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(SourceError) as raised:
        await client.list_experiments()
    assert raised.value.code == "connection_error"


def answering(list_body) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(list_body)

    app = web.Application()
    app.router.add_get("/api/v1/experiments", handler)
    return app


@pytest.mark.parametrize("body", [
    [experiment_record(1)],  # a bare list, not the object
    {"experiments": [experiment_record(1)]},  # no total
    {"experiments": [{**experiment_record(1), "id": None}], "total": 1},
    {"experiments": [{**experiment_record(1), "variants": [{"allocation": 0.5}]}], "total": 1},
    {"experiments": [{**experiment_record(1), "started_at": "yesterday"}], "total": 1},
    {"experiments": [{**experiment_record(1), "target_sample_size": "1000"}], "total": 1},
    {"experiments": [{**experiment_record(1), "significance_level": True}], "total": 1},
])
async def test_unexpected_list_shapes_are_invalid_responses(connect, body):
    client = await connect(answering(body))
    with pytest.raises(SourceError) as raised:
        await client.list_experiments()
    assert raised.value.code == "invalid_response" and "unexpected response shape" in str(raised.value)


async def test_never_more_than_max_concurrency_requests_in_flight(connect):
    fake = make_fake(0, latency_s=0.02)
    fake.experiments = [experiment_record(n, status=("running", "stopped")[n % 2]) for n in range(1, 25)]
    fake.counts = {r["id"]: [(100, 10), (100, 12)] for r in fake.experiments}
    client = await connect(fake, max_concurrency=3)
    # Concurrent reads (as from concurrent scrapes with different filters) share one bound.
    results = await asyncio.gather(client.read_experiments(), client.read_experiments("running"),
                                   client.read_experiments("stopped"), client.read_experiments())
    assert [len(r) for r in results] == [24, 12, 12, 24]
    assert 1 < fake.max_in_flight <= 3
    assert sum(fake.stats_requests.values()) == 72
