"""Lifecycle of the real command (issue 8, item 6), run as a subprocess on loopback.

- ``/health`` answers during start-up, before the first refresh has completed;
- SIGTERM lets the requests in flight finish, closes the live streams with 1001 and the upstream
  sessions, and exits 0 within a few seconds;
- a configuration error at start-up exits non-zero with one clear line on stderr, no traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import free_port
from tests.fakes.faults import Upstream
from tests.fakes.plausible import API_KEY, SITE_ID

pytestmark = pytest.mark.slow  # the real command started in a subprocess, test after test

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60.0  # generous: imports and the demo population on a busy machine
EXIT_SECONDS = 10.0  # "within a few seconds", with room for a busy machine


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment without the service's own variables (the tests say what they mean)."""
    names = ("PLAUSIBLE_", "EXPERIMENTATION_", "FEEDBACK_", "EVENTS_", "REFRESH_", "CORS_", "API_TOKEN", "ANALYTICS_",
             "SMTP_")
    return {k: v for k, v in os.environ.items() if not k.startswith(names)} | {"PYTHONUNBUFFERED": "1"} | extra


class Serving:
    """``python -m exporter serve`` in a subprocess; stdout and stderr are collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, host: str | None = "127.0.0.1") -> None:
        self.port = free_port()
        where = ["--host", host] if host else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", *where, "--port", str(self.port), *args],
            cwd=ROOT, env=env or clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    async def first_answer(self, session: aiohttp.ClientSession, path: str = "/health") -> dict:
        """The first answer of ``path`` once the port is open (polled until then)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                async with session.get(self.url + path) as response:
                    assert response.status == 200
                    return await response.json()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        pytest.fail(f"the service did not listen within {STARTUP_SECONDS} s")

    async def exit_code(self) -> int:
        """Wait (without blocking the loop) for the process to end; its exit code."""
        deadline = time.monotonic() + EXIT_SECONDS
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"still running {EXIT_SECONDS} s after SIGTERM")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def output(self) -> tuple[str, str]:
        return self.process.communicate(timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=5)


@pytest.fixture
def serving():
    started: list[Serving] = []

    def start(*args: str, env: dict[str, str] | None = None, host: str | None = "127.0.0.1") -> Serving:
        started.append(Serving(*args, env=env, host=host))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
async def plausible(aiohttp_server, fake_plausible) -> Upstream:
    upstream = Upstream(fake_plausible, aiohttp_server)
    await upstream.serve()
    return upstream


def config_file(directory: Path, plausible_url: str) -> Path:
    """Plausible only (the others disabled), every query at once (no queue at the client)."""
    path = directory / "analytics.yaml"
    path.write_text(f"""\
sources:
  plausible: {{url: "{plausible_url}", api_key: "{API_KEY}", site_id: "{SITE_ID}", api_version: v2,
               max_concurrency: 64}}
  experimentation: {{enabled: false}}
  feedback: {{enabled: false}}
""")
    return path


async def refused(url: str) -> bool:
    """Whether the port no longer accepts connections (the server has stopped listening)."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/health"):
            return False
    except aiohttp.ClientConnectionError:
        return True


async def until(condition, what: str, seconds: float = EXIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.05)


async def request_in_flight(session: aiohttp.ClientSession, service: Serving, plausible: Upstream) -> asyncio.Future:
    """A request the service is busy with: its upstream queries have reached the upstream, which
    holds them. The service's first refresh is let through and finished first, so that every
    request the upstream sees afterwards is this one's."""

    async def healthy() -> bool:
        async with session.get(service.url + "/health") as response:
            return (await response.json())["status"] == "healthy"

    await until(healthy, "the first refresh")
    plausible.switch.fault = "hold"
    warm_up = plausible.switch.requests
    # A window nothing has asked for yet, so its queries go to the upstream rather than to the memo.
    request = asyncio.ensure_future(session.get(service.url + "/api/v1/usage-trends?time_range=90d"))

    async def asked() -> bool:
        return plausible.switch.requests > warm_up

    await until(asked, "the request's upstream queries")
    return request


def assert_clean(stderr: str) -> None:
    """No traceback, and nothing left open or unfinished at exit."""
    for trouble in ("Traceback", "Unclosed", "never retrieved", "was destroyed but it is pending"):
        assert trouble not in stderr, stderr


async def test_health_answers_during_start_up_and_sigterm_exits_0(serving):
    """Demo mode: ``/health`` answers as soon as the port is open; SIGTERM ends the process cleanly."""
    service = serving("--demo")
    async with aiohttp.ClientSession() as session:
        health = await service.first_answer(session)
    assert health["service"] == "analytics-dashboard"
    assert set(health["sources"]) >= {"plausible", "experimentation", "feedback", "events"}
    service.process.send_signal(signal.SIGTERM)
    assert await service.exit_code() == 0
    _, stderr = service.output()
    assert_clean(stderr)


@pytest.mark.parametrize("host, reachable_from_elsewhere", [(None, False), ("0.0.0.0", True)])
async def test_the_demo_listens_on_loopback_unless_told_otherwise(serving, host, reachable_from_elsewhere):
    """No token, simulated data: ``--demo`` binds 127.0.0.1 (reached from 127.0.0.2, another address
    of this machine, only when ``--host`` asks for every interface)."""
    service = serving("--demo", host=host)
    async with aiohttp.ClientSession() as session:
        await service.first_answer(session)
    try:
        socket.create_connection(("127.0.0.2", service.port), timeout=5).close()
        reached = True
    except ConnectionRefusedError:
        reached = False
    assert reached == reachable_from_elsewhere


async def test_health_answers_before_the_first_refresh_completes(serving, plausible, tmp_path):
    plausible.switch.fault = "hold"  # the first refresh cannot complete until released
    service = serving("--config", str(config_file(tmp_path, plausible.url)))
    async with aiohttp.ClientSession() as session:
        health = await service.first_answer(session)
        assert health["status"] == "degraded"
        assert health["sources"]["plausible"]["status"] == "down"
        assert health["sources"]["plausible"]["error"] == "no successful refresh yet"
        plausible.switch.released.set()

        async def healthy() -> bool:
            async with session.get(service.url + "/health") as response:
                return (await response.json())["status"] == "healthy"

        await until(healthy, "the first refresh")
    service.process.send_signal(signal.SIGTERM)
    assert await service.exit_code() == 0


async def test_sigterm_lets_the_request_in_flight_finish(serving, plausible, tmp_path):
    service = serving("--config", str(config_file(tmp_path, plausible.url)))
    async with aiohttp.ClientSession() as session:
        await service.first_answer(session)
        in_flight = await request_in_flight(session, service, plausible)
        service.process.send_signal(signal.SIGTERM)
        await until(lambda: refused(service.url), "the listener closing")
        assert not in_flight.done()
        plausible.switch.released.set()  # now the upstream answers; the request can finish
        async with await in_flight as response:
            assert response.status == 200
            body = await response.json()
    assert body["time_range"] == "90d" and body["sources"]["plausible"]["status"] == "up"
    assert await service.exit_code() == 0
    _, stderr = service.output()
    assert "SIGTERM" in stderr
    assert_clean(stderr)


async def test_sigterm_with_a_request_stuck_on_an_upstream_still_exits_within_seconds(serving, plausible, tmp_path):
    service = serving("--config", str(config_file(tmp_path, plausible.url)))
    async with aiohttp.ClientSession() as session:
        await service.first_answer(session)
        stuck = await request_in_flight(session, service, plausible)  # never released
        service.process.send_signal(signal.SIGTERM)
        assert await service.exit_code() == 0
        with pytest.raises(aiohttp.ClientError):
            await stuck
    _, stderr = service.output()
    assert_clean(stderr)


async def test_sigterm_closes_the_streams_with_1001_and_exits_0(serving, plausible, tmp_path):
    service = serving("--config", str(config_file(tmp_path, plausible.url)))
    async with aiohttp.ClientSession() as session:
        await service.first_answer(session)
        async with session.ws_connect(f"{service.url}/api/v1/stream?sections=usage_trends") as ws:
            first = await ws.receive(timeout=STARTUP_SECONDS)
            service.process.send_signal(signal.SIGTERM)
            closing = await ws.receive(timeout=EXIT_SECONDS)
    assert first.type == aiohttp.WSMsgType.TEXT and '"section":"usage_trends"' in first.data
    assert (closing.type, closing.data, closing.extra) == (aiohttp.WSMsgType.CLOSE, 1001, "the server is shutting down")
    assert await service.exit_code() == 0
    assert_clean(service.output()[1])


# -- a configuration error at start-up ---------------------------------------------------------------


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT, env=env or clean_environment(),
                          capture_output=True, text=True, timeout=STARTUP_SECONDS)


@pytest.mark.parametrize("problem, args, environment, words", [
    ("unknown key", ["--config", "{dir}/unknown.yaml"], {}, "sources.plausible.colour"),
    ("not YAML", ["--config", "{dir}/broken.yaml"], {}, "not valid YAML"),
    ("missing file", ["--config", "{dir}/absent.yaml"], {}, "not found"),
    ("bad environment value", [], {"REFRESH_INTERVAL": "soon"}, "ttl_seconds"),
    ("missing secret file", [], {"PLAUSIBLE_API_KEY_FILE": "{dir}/no-such-key"}, "no-such-key"),
    ("schedule that does not parse", ["--config", "{dir}/report.yaml"], {},
     "reports[0]: schedule: 'every monday' is not a schedule"),
])
def test_a_configuration_error_is_one_line_and_exit_1(tmp_path, problem, args, environment, words):
    (tmp_path / "unknown.yaml").write_text("sources:\n  plausible:\n    colour: blue\n")
    (tmp_path / "broken.yaml").write_text("sources: [plausible\n")
    (tmp_path / "report.yaml").write_text("reports: [{name: weekly, schedule: every monday, recipients: [a@x.org]}]\n"
                                          "smtp: {host: smtp.example.com, sender: a@example.com}\n")
    fill = {"dir": str(tmp_path)}
    result = run_command("serve", "--port", str(free_port()), *(a.format(**fill) for a in args),
                         env=clean_environment(**{k: v.format(**fill) for k, v in environment.items()}))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_a_port_already_taken_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command("serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "in use" in lines[0], result.stderr
