"""Deadlines (issue 8, item 2): a slow upstream never holds a request past its deadline.

``/metrics`` takes its deadline from Prometheus' ``X-Prometheus-Scrape-Timeout-Seconds`` (or
``metrics.default_scrape_timeout_seconds``) and answers with what it has before then; loads cut
off go on in the background for the next scrape. The JSON endpoints answer within
``server.request_timeout_seconds``. The upstreams here are slower than every per-attempt timeout,
so only those deadlines can end the wait.

Speed is never asserted: each request only has to arrive before its own deadline, as Prometheus
(or any caller) would require; the service's internal margin makes that a comfortable fit.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from exporter.service import AnalyticsService
from tests.conftest import service_config, settle
from tests.fakes.experimentation import FakeExperimentation, experiment_record
from tests.fakes.faults import Upstream

pytestmark = pytest.mark.slow  # every test waits out real deadlines, a second or so each

HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
HANG_SECONDS = 60.0  # the slow upstream's delay: far past every deadline here
ATTEMPT_TIMEOUT = 30.0  # per attempt: longer than every deadline, so only the deadlines end a wait
USAGE = "analytics_active_users"
EXPERIMENTS = "analytics_active_experiments"


async def within(deadline: float, request) -> tuple[int, bytes]:
    """Status and body of ``request``, which must arrive within ``deadline`` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline):
            response = await request
            return response.status, await response.read()
    except TimeoutError:
        pytest.fail(f"no answer within the {deadline:g} s deadline (gave up after {time.monotonic() - started:.2f} s)")


def families(body: bytes) -> dict[str, dict[tuple, float]]:
    """Metric family -> {sorted labels: value}."""
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def source_up(found: dict[str, dict[tuple, float]], source: str) -> float:
    return found["analytics_source_up"][(("source", source),)]


@pytest.fixture
async def plausible(aiohttp_server, fake_plausible) -> Upstream:
    upstream = Upstream(fake_plausible, aiohttp_server)
    upstream.switch.delay_seconds = HANG_SECONDS
    await upstream.serve()
    return upstream


@pytest.fixture
async def experimentation(aiohttp_server, clock) -> Upstream:
    started = (datetime.fromtimestamp(clock(), timezone.utc) - timedelta(days=3)).replace(tzinfo=None)
    experiments = [experiment_record(1, started_at=started)]
    upstream = Upstream(FakeExperimentation(experiments, {experiments[0]["id"]: [(300, 30), (300, 45)]}),
                        aiohttp_server)
    await upstream.serve()
    return upstream


@pytest.fixture
def start_service(plausible, experimentation, aiohttp_client, clock):
    """``await start_service(**overrides)`` -> (client, service): Plausible and Experimentation."""

    async def start(**overrides):
        # Enough concurrency for every query at once: waits here are one delay long, not a queue of them.
        settings = {"sources.plausible.api_version": "v2", "sources.plausible.timeout_seconds": ATTEMPT_TIMEOUT,
                    "sources.plausible.max_concurrency": 64,
                    "sources.experimentation.url": experimentation.url} | overrides
        service = AnalyticsService(service_config(plausible.url, **settings), clock=clock)
        return await aiohttp_client(create_app(service)), service

    return start


async def test_a_scrape_answers_by_its_deadline_with_what_it_has(start_service, plausible):
    client, _ = await start_service()
    plausible.switch.fault = "slow"
    status, body = await within(1.5, client.get("/metrics", headers={HEADER: "1.5"}))
    assert status == 200
    found = families(body)
    assert source_up(found, "plausible") == 0.0 and USAGE not in found  # still loading: nothing to show yet
    assert source_up(found, "experimentation") == 1.0 and found[EXPERIMENTS][()] == 1.0  # the fast one made it
    # /health never waits on an upstream, even with loads in flight.
    status, body = await within(1.0, client.get("/health"))
    assert status == 200 and b'"no successful refresh yet"' in body


async def test_loads_cut_off_by_the_deadline_finish_for_the_next_scrape(start_service, plausible, fake_plausible):
    client, service = await start_service()
    plausible.switch.fault, plausible.switch.delay_seconds = "slow", 1.0  # slower than the deadline only
    status, body = await within(0.8, client.get("/metrics", headers={HEADER: "0.8"}))
    assert status == 200 and USAGE not in families(body)
    await settle(service)  # the loads the deadline cut off went on
    asked = len(fake_plausible.requests)
    status, body = await within(0.8, client.get("/metrics", headers={HEADER: "0.8"}))
    assert families(body)[USAGE]  # now there
    assert len(fake_plausible.requests) == asked  # from the finished loads, not from asking again
    assert source_up(families(body), "plausible") == 1.0


async def test_a_longer_deadline_waits_for_a_slower_upstream(start_service, plausible):
    """The header is honoured, not only the default: 3 s is enough where the default 1 s is not."""
    client, _ = await start_service(**{"metrics.default_scrape_timeout_seconds": 1.0})
    # The default leaves 0.5 s for the loads (1 s less the rendering margin): too short for 0.8 s.
    plausible.switch.fault, plausible.switch.delay_seconds = "slow", 0.8
    status, body = await within(3.0, client.get("/metrics", headers={HEADER: "3"}))
    assert status == 200 and families(body)[USAGE]


@pytest.mark.parametrize("header", [None, "", "soon", "0", "-2", "nan", "inf", "1e9"])
async def test_without_a_usable_header_the_configured_default_applies(start_service, plausible, header):
    client, _ = await start_service(**{"metrics.default_scrape_timeout_seconds": 1.0})
    plausible.switch.fault = "slow"
    status, body = await within(1.0, client.get("/metrics", headers={} if header is None else {HEADER: header}))
    assert status == 200 and source_up(families(body), "experimentation") == 1.0


async def test_a_deadline_shorter_than_the_rendering_margin_answers_at_once(start_service, plausible):
    client, _ = await start_service()
    plausible.switch.fault = "slow"
    status, body = await within(0.5, client.get("/metrics", headers={HEADER: "0.5"}))  # no time left to wait
    assert status == 200 and "analytics_build_info" in families(body)


async def test_concurrent_scrapes_each_meet_their_own_deadline_and_share_the_loads(start_service, plausible,
                                                                                   fake_plausible):
    client, service = await start_service()
    plausible.switch.fault, plausible.switch.delay_seconds = "slow", 1.0
    deadlines = [0.6, 0.8, 1.0] * 4
    answers = await asyncio.gather(*(within(d, client.get("/metrics", headers={HEADER: str(d)})) for d in deadlines))
    assert [status for status, _ in answers] == [200] * len(deadlines)
    await settle(service)
    queries = [str(sorted(body.items())) for _, _, body in fake_plausible.requests]
    assert queries and len(queries) == len(set(queries))  # one upstream request per query, however many scrapes


@pytest.mark.parametrize("path", ["/api/v1/usage-trends", "/api/v1/feature-adoption", "/api/v1/dashboard",
                                  "/api/v1/export/csv"])
async def test_json_endpoints_answer_within_the_request_deadline(start_service, plausible, path):
    client, _ = await start_service(**{"server.request_timeout_seconds": 1.0})
    plausible.switch.fault = "slow"
    status, body = await within(2.0, client.get(path))
    if path.endswith("csv"):  # every section's numbers: none from the slow source, the others' are there
        assert status == 200 and b"\nusage_trends," not in body and b"\nexperiment_results," in body
    elif path.endswith("dashboard"):  # every section: the slow one's an error entry, the others are there
        assert status == 200 and b'"upstream_timeout"' in body and b'"experiment_results":{"time_range"' in body
    else:
        assert status == 503 and b'"upstream_timeout"' in body


async def test_the_refresh_endpoint_answers_202_within_the_request_deadline(start_service, plausible):
    client, _ = await start_service(**{"server.request_timeout_seconds": 1.0})
    plausible.switch.fault = "slow"
    status, body = await within(2.0, client.post("/api/v1/metrics/refresh"))
    assert status == 202
    assert b'"plausible":"pending"' in body and b'"experimentation":"refreshed"' in body
