"""Shared fixtures: a controllable clock, a fake Plausible on loopback, and the service around it."""

from __future__ import annotations

import asyncio
import gc
import threading
from datetime import datetime, timezone

import pytest

from api.app import create_app
from exporter.cli import demo_overrides
from exporter.config import load_config
from exporter.demo.runner import start_demo_upstreams
from exporter.service import AnalyticsService
from tests.fakes.plausible import API_KEY, SITE_ID, FakePlausible


def seeds(count: int, fast: int = 2) -> list:
    """``range(count)`` as parameters, those past the first ``fast`` marked slow: the developer's loop
    compares a couple of generated cases, ``make test`` all of them."""
    return [pytest.param(seed, marks=pytest.mark.slow) if seed >= fast else seed for seed in range(count)]


class FakeClock:
    """Wall-clock stand-in: tests move time with ``advance`` instead of sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else datetime.now(timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def without_gc_collect(monkeypatch) -> None:
    """``gc.collect()`` a no-op: statsmodels' Holm correction runs one on every call, up to half a
    second each in a process as big as the suite's, and the references computed never depend on it."""
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)


@pytest.fixture
def fake_plausible(clock: FakeClock) -> FakePlausible:
    return FakePlausible(today=datetime.fromtimestamp(clock(), timezone.utc).date())


@pytest.fixture
async def plausible_server(aiohttp_server, fake_plausible: FakePlausible):
    return await aiohttp_server(fake_plausible.app())


async def settle(service: AnalyticsService) -> None:
    """Wait for every load under way: the background refreshes requests started, the loads deadlines cut off."""
    while loading := service.memo.in_flight():
        await asyncio.wait(loading)


def service_config(plausible_url: str | None, **overrides):
    """A configuration with only Plausible configured (other sources disabled)."""
    values = {
        "sources.plausible.url": plausible_url,
        "sources.plausible.api_key": API_KEY,
        "sources.plausible.site_id": SITE_ID,
        "sources.plausible.max_retries": 1,
        "sources.plausible.timeout_seconds": 1.0,
        "sources.experimentation.url": None,
        "sources.feedback.url": None,
        "events.path": None,
    }
    values.update(overrides)
    return load_config(environ={}, overrides=values)


@pytest.fixture
def make_client(aiohttp_client, plausible_server, clock):
    """``await make_client(**config overrides)`` -> (test client, service)."""

    async def make(**overrides):
        service = AnalyticsService(service_config(str(plausible_server.make_url("/")), **overrides), clock=clock)
        return await aiohttp_client(create_app(service)), service

    return make


@pytest.fixture(scope="session")
def demo_upstreams(tmp_path_factory):
    """The demo's simulated upstreams (``DemoUpstreams``), started once per session on an event loop
    of their own in a background thread: starting them costs over a second, and tests reach them
    over loopback HTTP from their own loops, as the service would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-upstreams", daemon=True)
    thread.start()
    demo = asyncio.run_coroutine_threadsafe(start_demo_upstreams(workdir=tmp_path_factory.mktemp("demo")),
                                            loop).result()
    yield demo
    asyncio.run_coroutine_threadsafe(demo.close(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


@pytest.fixture
def make_demo_client(aiohttp_client, demo_upstreams, clock):
    """``await make_demo_client(**config overrides)`` -> (test client, service): the app as
    ``serve --demo`` runs it, on the test's clock."""

    async def make(**overrides):
        config = load_config(environ={}, overrides=demo_overrides(demo_upstreams) | overrides)
        service = AnalyticsService(config, clock=clock)
        return await aiohttp_client(create_app(service)), service

    return make
