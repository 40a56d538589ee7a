"""Upstream faults, one upstream at a time and all at once (issue 8, item 1).

Every HTTP upstream is its fake from ``tests/fakes`` on loopback, with a :class:`FaultSwitch`
middleware in front: while a fault is armed it answers in place of the fake (or mangles the
fake's answer), so the service meets each fault through real sockets and its real clients.

Each scenario follows one upstream through a whole outage:

1. warm: every source up;
2. the fault starts and the cached data goes stale: the next scrape refreshes in the background
   and fails. ``/metrics`` still answers 200 within the scrape deadline with every series, the
   failing source's ``analytics_source_up`` is 0 and its last-success timestamp stays at the last
   real success, its JSON sections are served marked ``stale``, ``/health`` is ``degraded``;
3. past the hard limit (2 x TTL) its series and sections are gone (503 with the envelope and the
   reason), every other source's series are still there;
4. the fault ends: the next refresh restores everything, without a restart.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import exporter.sources.plausible as plausible_module
from api.app import create_app
from exporter import __version__
from exporter.demo.catalog import START_SERVICE_CREATION, USER_LOGIN, VIEW_DOCUMENTATION
from exporter.errors import SourceError
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange, iso_z, resolve
from tests.conftest import service_config, settle
from tests.fakes.experimentation import FakeExperimentation, experiment_record
from tests.fakes.faults import HUGE_BODY, Upstream
from tests.fakes.feedback import ADMIN_TOKEN, FakeFeedback, make_items

UPSTREAMS = ("plausible", "experimentation", "feedback")
SCRAPE_DEADLINE = 3.0  # seconds, as Prometheus' X-Prometheus-Scrape-Timeout-Seconds
# Each upstream's per-attempt timeout, which only the "slow" fault is meant to meet. The fakes share
# the test's event loop with the service, so on a starved machine an answer can take a while: at 1 s,
# answers the scenarios counted on timed out under a full suite on two busy cores (Plausible's most
# often: it asks the most at once), and a source meant to be up, or to fail otherwise, was down.
ATTEMPT_TIMEOUT = 5.0
# The timeout of the upstreams the "slow" fault will hold up (for FaultSwitch.delay_seconds, 10 s):
# the scenario waits it out twice, so it is short; it still has to cover their healthy answers before
# the fault, hence twice the 1 s that was sometimes too short.
SLOW_FAULT_ATTEMPT_TIMEOUT = 2.0
SIZE_LIMIT = 1024 * 1024  # max_response_bytes in these tests
EVENT_LOOP_BUFFERS = 1024 * 1024  # generous: the client's read buffer, the server's write buffer, a chunk or two

# The JSON sections each upstream owns, and the metric families only it feeds.
OWNED_SECTIONS = {
    "plausible": ("/api/v1/usage-trends", "/api/v1/feature-adoption"),
    "experimentation": ("/api/v1/experiment-results",),
    "feedback": ("/api/v1/feedback",),
    "events": ("/api/v1/user-segments", "/api/v1/funnel/onboarding"),
}
OWNED_METRIC_PREFIXES = {
    "plausible": ("analytics_total_users", "analytics_active_users", "analytics_page_views",
                  "analytics_unique_visitors", "analytics_avg_session_duration", "analytics_bounce_rate",
                  "analytics_current_visitors", "analytics_feature_"),
    "experimentation": ("analytics_experiment_", "analytics_active_experiments", "analytics_experiments_significant"),
    "feedback": ("analytics_feedback_",),
    "events": ("analytics_segment_", "analytics_funnel_"),
}

# fault -> (the envelope's error code, words the error message says)
FAULTS: dict[str, tuple[str, str]] = {
    "slow": ("timeout", "no answer within"),
    "refused": ("connection_error", "cannot connect"),
    "500": ("upstream_unavailable", "HTTP 500"),
    "502": ("upstream_unavailable", "HTTP 502"),
    "503": ("upstream_unavailable", "HTTP 503"),
    "504": ("upstream_unavailable", "HTTP 504"),
    "429": ("rate_limited", "429"),
    "truncated": ("invalid_response", "not valid JSON"),
    "wrong_shape": ("invalid_response", "unexpected response shape"),
    "wrong_types": ("invalid_response", "unexpected response shape"),
    "huge_streamed": ("invalid_response", "byte limit"),
    "huge_declared": ("invalid_response", "byte limit"),
}


def with_slow_marked(faults: Iterable[str]) -> list:
    """The faults as parameters, "slow" marked slow: its scenario waits out real attempt timeouts."""
    return [pytest.param(fault, marks=pytest.mark.slow) if fault == "slow" else fault for fault in faults]


@pytest.fixture
async def upstreams(aiohttp_server, fake_plausible, clock) -> dict[str, Upstream]:
    now = datetime.fromtimestamp(clock(), timezone.utc)
    experiments = [experiment_record(n, started_at=(now - timedelta(days=10)).replace(tzinfo=None))
                   for n in (1, 2, 3)]
    fakes = {
        "plausible": fake_plausible,
        "experimentation": FakeExperimentation(experiments, {e["id"]: [(400, 40), (400, 61)] for e in experiments}),
        "feedback": FakeFeedback(make_items(now, count=150)),
    }
    found = {name: Upstream(fake, aiohttp_server) for name, fake in fakes.items()}
    for upstream in found.values():
        await upstream.serve()
    return found


@pytest.fixture
def start_service(aiohttp_client, upstreams, clock):
    """``await start_service(urls, slow=names, **overrides)`` -> (client, service) reading every fake
    upstream; ``slow`` names the upstreams the "slow" fault will hold up."""

    async def start(urls: dict[str, str] | None = None, *, slow: Collection[str] = (), **overrides):
        urls = {name: upstream.url for name, upstream in upstreams.items()} | (urls or {})
        settings = {"sources.plausible.api_version": "v2", "sources.feedback.admin_token": ADMIN_TOKEN}
        # Every query at once (no queue at the client), so a slow upstream costs one timeout, not a row of them.
        for name in UPSTREAMS:
            timeout = SLOW_FAULT_ATTEMPT_TIMEOUT if name in slow else ATTEMPT_TIMEOUT
            settings |= {f"sources.{name}.timeout_seconds": timeout, f"sources.{name}.max_retries": 0,
                         f"sources.{name}.max_response_bytes": SIZE_LIMIT, f"sources.{name}.max_concurrency": 64}
        settings |= {"sources.experimentation.url": urls["experimentation"], "sources.feedback.url": urls["feedback"]}
        service = AnalyticsService(service_config(urls["plausible"], **settings, **overrides), clock=clock)
        return await aiohttp_client(create_app(service)), service

    return start


# -- observing the service --------------------------------------------------------------------------


async def scrape_text(client) -> str:
    """``/metrics`` as Prometheus scrapes it: 200 within the deadline it announces, or a failure."""
    try:
        async with asyncio.timeout(SCRAPE_DEADLINE):
            response = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds":
                                                             str(SCRAPE_DEADLINE)})
            text = await response.text()
    except TimeoutError:
        pytest.fail(f"/metrics did not answer within the {SCRAPE_DEADLINE} s scrape deadline")
    assert response.status == 200
    return text


async def scrape(client) -> dict[tuple[str, tuple], float]:
    """``/metrics`` scraped (see :func:`scrape_text`), sample by sample."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(await scrape_text(client)) for s in family.samples}


async def scrape_settled(client, service: AnalyticsService) -> dict[tuple[str, tuple], float]:
    """``/metrics`` once the loads a first scrape started have finished: all that refresh brought.

    The first scrape still answers within its deadline, but the loads it starts need not finish by
    then on a starved machine (the fakes share the test's event loop); ``test_deadlines`` covers
    what a scrape serves meanwhile.
    """
    await scrape_text(client)
    await settle(service)
    return await scrape(client)


def owned_series(found: dict[tuple[str, tuple], float], source: str) -> set[tuple[str, tuple]]:
    return {key for key in found if key[0].startswith(OWNED_METRIC_PREFIXES[source])}


def source_value(found: dict[tuple[str, tuple], float], metric: str, source: str) -> float | None:
    return found.get((metric, (("source", source),)))


async def get_json(client, path: str) -> tuple[int, dict]:
    response = await client.get(path)
    return response.status, await response.json()


def assert_up(found: dict, source: str, last_success: float | None = None) -> None:
    """Up; with ``last_success``, its last-success timestamp is that moment."""
    assert source_value(found, "analytics_source_up", source) == 1.0, source
    if last_success is not None:
        assert source_value(found, "analytics_source_last_success_timestamp_seconds", source) == last_success, source


def assert_down(found: dict, source: str, last_success: float | None) -> None:
    """Down, and the last-success timestamp is the last real success (absent when there was none)."""
    assert source_value(found, "analytics_source_up", source) == 0.0, source
    assert source_value(found, "analytics_source_last_success_timestamp_seconds", source) == last_success, source


async def assert_health(client, down: set[str], words: str = "") -> None:
    health = await (await client.get("/health")).json()
    assert health["status"] == ("degraded" if down else "healthy")
    for name, summary in health["sources"].items():
        if summary["status"] == "disabled":
            continue
        assert summary["status"] == ("down" if name in down else "up"), (name, summary)
        if name in down:
            assert words in summary["error"] and "<html" not in summary["error"].lower(), summary


async def assert_sections_unavailable(client, source: str, code: str, words: str) -> None:
    """Every section of ``source`` answers 503 with the envelope, naming the source and the reason."""
    for path in OWNED_SECTIONS[source]:
        status, body = await get_json(client, path)
        assert status == 503, (path, body)
        assert body["error"]["code"] == code and words in body["error"]["message"], body
        assert body["error"]["message"].startswith(f"source {source}:"), body


async def assert_sections_served(client, source: str, *, stale: bool) -> None:
    """Every section of ``source`` answers 200; a stale one says so, and says its source is down."""
    for path in OWNED_SECTIONS[source]:
        status, body = await get_json(client, path)
        assert status == 200, (path, body)
        assert body.get("stale", False) is stale, path
        assert body["sources"][source]["status"] == ("down" if stale else "up"), body["sources"]


def expected_error(name: str, fault: str) -> tuple[str, str]:
    code, words = FAULTS[fault]
    if name == "plausible" and fault == "429":
        return code, "hourly request budget exhausted"
    return code, words


def sent_by_hang_up(read: int) -> int:
    """The most a "huge" answer can have been sent when its client hangs up after reading ``read`` bytes.

    The rest sits on the way: in the receiver's socket buffer, which Linux grows on loopback up to
    tcp_rmem's maximum (32 MB on some machines: a fixed 10 MB bound was exceeded on a busy one), in
    the sender's (up to tcp_wmem's), and in the two event loops' own buffers (a few 64 KB chunks).
    """
    buffers = (int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2]) for name in ("tcp_rmem", "tcp_wmem"))
    return read + sum(buffers) + EVENT_LOOP_BUFFERS


class _AnHourLater(datetime):
    """The wall clock an hour from now: Plausible's rate-limit back-off has run out."""

    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206 - datetime's own signature
        return datetime.now(tz) + timedelta(hours=1)


# -- one upstream at a time ----------------------------------------------------------------------------


def upstream_fault_matrix() -> list:
    """Every upstream with every fault. The fast set keeps a diagonal, each fault with one upstream
    in turn (so each of both at least once); the rest of the matrix, and "slow" anywhere, are slow."""
    return [pytest.param(name, fault, id=f"{name}-{fault}",
                         marks=() if fault != "slow" and i % len(UPSTREAMS) == j else pytest.mark.slow)
            for j, name in enumerate(UPSTREAMS) for i, fault in enumerate(FAULTS)]


@pytest.mark.parametrize(("name", "fault"), upstream_fault_matrix())
async def test_one_upstream_fails_then_recovers(start_service, upstreams, clock, monkeypatch, name, fault):
    code, words = expected_error(name, fault)
    upstream = upstreams[name]
    others = [other for other in UPSTREAMS if other != name]
    client, service = await start_service(slow={name} if fault == "slow" else ())
    ttl = service.config.cache.ttl_seconds

    warm = await scrape_settled(client, service)
    warmed_at = clock()
    for source in UPSTREAMS:
        assert_up(warm, source, warmed_at)
        assert owned_series(warm, source), source

    # The fault starts and the data goes stale: this scrape serves it and refreshes in the background.
    await upstream.arm(fault)
    clock.advance(ttl + 1)
    assert set(await scrape(client)) >= set(warm)
    await settle(service)
    failed = await scrape(client)
    assert_down(failed, name, warmed_at)
    for other in others:
        assert_up(failed, other, clock())
    assert owned_series(failed, name) == owned_series(warm, name)  # the last good data, within 2 x TTL
    await assert_sections_served(client, name, stale=True)
    await assert_health(client, {name}, words)

    # Past the hard limit the failing source's data is dropped, and nothing else.
    clock.advance(ttl)
    requests_before = upstream.switch.requests
    dropped = await scrape(client)
    await settle(service)
    assert_down(dropped, name, warmed_at)
    assert not owned_series(dropped, name)
    for other in others:
        assert owned_series(dropped, other) == owned_series(warm, other)
        await assert_sections_served(client, other, stale=False)
    await assert_sections_unavailable(client, name, code, words)
    await assert_health(client, {name}, words)
    if fault.startswith("huge"):  # refused by the size limit long before the 100 MB were sent
        await upstream.switch.streams_finished()
        assert upstream.switch.streamed and max(upstream.switch.streamed) <= sent_by_hang_up(SIZE_LIMIT) < HUGE_BODY
    if name == "plausible" and fault == "429":
        # Plausible's budget is hourly and its 429 has no Retry-After: not one request until the hour.
        assert upstream.switch.requests == requests_before
        monkeypatch.setattr(plausible_module, "datetime", _AnHourLater)

    # The fault ends: the next refresh brings everything back, without a restart. Loads the outage
    # started (the section requests above start their own) end first, failed: one still held up by
    # the fault would be joined by the next refresh and fail it.
    await settle(service)
    await upstream.arm(None)
    clock.advance(service.memo.failure_backoff)
    recovered = await scrape_settled(client, service)
    assert_up(recovered, name, clock())
    for other in others:
        assert_up(recovered, other)
    assert owned_series(recovered, name) == owned_series(warm, name)
    await assert_sections_served(client, name, stale=False)
    await assert_health(client, set())


async def test_plausible_429_is_final_at_once(aiohttp_server, fake_plausible, clock):
    """Plausible's budget is hourly: a retry seconds after a 429 cannot succeed, so none is made."""
    fake_plausible.fault = "429"
    server = await aiohttp_server(fake_plausible.app())
    config = service_config(str(server.make_url("/")), **{"sources.plausible.api_version": "v2",
                                                           "sources.plausible.max_retries": 2})
    service = AnalyticsService(config, clock=clock)
    try:
        with pytest.raises(SourceError) as raised:
            await service.plausible.aggregate(resolve(TimeRange.D7, datetime.fromtimestamp(clock(), timezone.utc)))
    finally:
        await service.close()
    assert raised.value.code == "rate_limited" and len(fake_plausible.requests) == 1


async def test_an_unresolvable_upstream_at_start_up_then_resolvable(start_service, upstreams, clock, monkeypatch):
    """DNS failure (a name under .invalid, RFC 6761) from the first refresh on, until the name resolves."""
    name = "experimentation"
    host = f"{name}.invalid"
    client, service = await start_service({name: f"http://{host}:{upstreams[name].port}/"})

    cold = await scrape_settled(client, service)
    assert_down(cold, name, None)  # never succeeded: no last-success timestamp at all
    assert not owned_series(cold, name)
    for other in ("plausible", "feedback"):
        assert_up(cold, other, clock())
        assert owned_series(cold, other)
    await assert_sections_unavailable(client, name, "connection_error", "DNS lookup failed")
    await assert_health(client, {name}, "DNS lookup failed")

    resolve = socket.getaddrinfo

    def resolving(host_name, *args, **kwargs):  # the DNS record appears
        return resolve("127.0.0.1" if host_name == host else host_name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolving)
    clock.advance(service.memo.failure_backoff)
    recovered = await scrape_settled(client, service)
    assert_up(recovered, name, clock())
    assert owned_series(recovered, name)
    await assert_sections_served(client, name, stale=False)
    await assert_health(client, set())


# -- every upstream at once --------------------------------------------------------------------------


def write_events(path: Path, now: float) -> None:
    """A small identified-events file: a dozen users, each some way into the onboarding funnel."""
    steps = (USER_LOGIN, VIEW_DOCUMENTATION, START_SERVICE_CREATION)
    lines = [json.dumps({"user_id": f"user-{user}", "event": event,
                         "timestamp": iso_z(datetime.fromtimestamp(now - 86400 * (user + 1) + 600 * step,
                                                                   timezone.utc))})
             for user in range(12) for step, event in enumerate(steps[: 1 + user % len(steps)])]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.mark.parametrize("fault", with_slow_marked(["slow", "refused", "503", "truncated", "wrong_types",
                                                    "huge_streamed"]))
async def test_every_upstream_fails_at_once_then_recovers(start_service, upstreams, clock, tmp_path, fault):
    """The three HTTP upstreams fail alike while the events file disappears; all come back."""
    code, words = FAULTS[fault]
    sources = (*UPSTREAMS, "events")
    events = tmp_path / "events.jsonl.gz"
    write_events(events, clock())
    client, service = await start_service(slow=UPSTREAMS if fault == "slow" else (), **{"events.path": str(events)})
    ttl = service.config.cache.ttl_seconds

    warm = await scrape_settled(client, service)
    warmed_at = clock()
    for source in sources:
        assert_up(warm, source, warmed_at)
        assert owned_series(warm, source), source

    for upstream in upstreams.values():
        await upstream.arm(fault)
    events.unlink()
    clock.advance(ttl + 1)
    await scrape(client)
    await settle(service)
    failed = await scrape(client)
    for source in sources:
        assert_down(failed, source, warmed_at)
        assert owned_series(failed, source) == owned_series(warm, source)
    await assert_health(client, set(sources))

    clock.advance(ttl)
    dropped = await scrape(client)
    await settle(service)
    assert ("analytics_build_info", (("version", __version__),)) in dropped
    for source in sources:
        assert_down(dropped, source, warmed_at)
        assert not owned_series(dropped, source)
    for source in UPSTREAMS:
        await assert_sections_unavailable(client, source, code, words)
    await assert_sections_unavailable(client, "events", "file_unreadable", "does not exist")
    await assert_health(client, set(sources))

    await settle(service)  # as in test_one_upstream_fails_then_recovers
    for upstream in upstreams.values():
        await upstream.arm(None)
    write_events(events, clock())
    clock.advance(service.memo.failure_backoff)
    recovered = await scrape_settled(client, service)
    for source in sources:
        assert_up(recovered, source, clock())
        assert owned_series(recovered, source) == owned_series(warm, source)
        await assert_sections_served(client, source, stale=False)
    await assert_health(client, set())
