"""Secrets and access (issue 8, item 4).

- The Plausible API key, the Feedback admin token and the service's own API token appear in no
  log line (DEBUG included), error, ``/health``, ``/metrics``, JSON answer or ``check-config``
  output, even when an upstream quotes the credentials it was sent back in its error.
- ``API_TOKEN`` guards every ``/api/v1/*`` route (and only those), compared in constant time; no
  spelling of a path reaches an API handler without it.
- CORS answers only the configured origins, by exact match, preflight included.
- The service needs no privilege beyond a port and its configuration: it serves with every Linux
  capability dropped, from a directory it cannot write, and holds no file open for writing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from api.app import create_app
from devtools.processes import free_port
from exporter.cli import main
from exporter.service import AnalyticsService
from tests.conftest import service_config
from tests.fakes.experimentation import FakeExperimentation, experiment_record
from tests.fakes.faults import Upstream
from tests.fakes.feedback import ADMIN_TOKEN, FakeFeedback, make_items
from tests.fakes.plausible import API_KEY, SITE_ID

API_TOKEN = "api-token-3b8e61f0c2"
SECRETS = (API_KEY, ADMIN_TOKEN, API_TOKEN)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ALLOWED_ORIGINS = ("https://portal.fawkes.idp", "http://localhost:3000")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def upstreams(aiohttp_server, fake_plausible, clock) -> dict[str, Upstream]:
    now = datetime.fromtimestamp(clock(), timezone.utc)
    experiments = [experiment_record(1, started_at=(now - timedelta(days=5)).replace(tzinfo=None))]
    fakes = {"plausible": fake_plausible,
             "experimentation": FakeExperimentation(experiments, {experiments[0]["id"]: [(200, 20), (200, 31)]}),
             "feedback": FakeFeedback(make_items(now, count=60))}
    found = {name: Upstream(fake, aiohttp_server) for name, fake in fakes.items()}
    for upstream in found.values():
        await upstream.serve()
    return found


@pytest.fixture
def start_service(upstreams, aiohttp_client, clock):
    """``await start_service(**overrides)`` -> (client, app): every upstream, the API token set."""

    async def start(**overrides):
        settings = {"sources.plausible.api_version": "v2", "sources.plausible.max_retries": 0,
                    "sources.experimentation.url": upstreams["experimentation"].url,
                    "sources.feedback.url": upstreams["feedback"].url,
                    "sources.feedback.admin_token": ADMIN_TOKEN, "sources.feedback.max_retries": 0,
                    "server.api_token": API_TOKEN} | overrides
        app = create_app(AnalyticsService(service_config(upstreams["plausible"].url, **settings), clock=clock))
        return await aiohttp_client(app), app

    return start


def api_paths(app) -> list[tuple[str, str]]:
    """(method, path) of every /api/v1 route, path parameters filled with valid values."""
    values = {"funnel_name": "onboarding", "format": "csv", "name": "weekly"}
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path", "")
        if template.startswith("/api/v1/") and route.method != "HEAD":
            found.append((route.method, template.format(**values)))
    return sorted(set(found))


# -- secrets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [None, "echo_auth", "500", "truncated"])
async def test_no_secret_leaves_the_service(start_service, upstreams, caplog, fault):
    caplog.set_level(logging.DEBUG)  # every logger, every level
    for upstream in upstreams.values():
        upstream.switch.fault = fault
    client, app = await start_service()
    seen = []
    for method, path in api_paths(app):
        seen.append(await (await client.request(method, path, headers=AUTH)).text())
        seen.append(await (await client.request(method, path)).text())  # refused: no token
        seen.append(await (await client.request(method, path, headers={"Authorization": "Bearer nope"})).text())
    metrics = await (await client.get("/metrics")).text()
    health = await (await client.get("/health")).text()
    everything = "\n".join([caplog.text, metrics, health, *seen])
    assert "analytics_source_up" in metrics and '"sources"' in health
    for secret in SECRETS:
        assert secret not in everything
    if fault == "echo_auth":  # the upstream's own words are kept, with the credential masked
        assert "rejected Authorization: 'Bearer ***'" in health


def test_check_config_prints_every_secret_masked(tmp_path, capsys, monkeypatch):
    key_file = tmp_path / "plausible.key"
    key_file.write_text(API_KEY + "\n")
    monkeypatch.chdir(tmp_path)  # no config/analytics.yaml here: defaults plus the environment
    for name, value in {"PLAUSIBLE_API_KEY_FILE": str(key_file), "FEEDBACK_ADMIN_TOKEN": ADMIN_TOKEN,
                        "API_TOKEN": API_TOKEN, "PLAUSIBLE_SITE_ID": SITE_ID}.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("'***'") == 3 and SITE_ID in printed
    for secret in SECRETS:
        assert secret not in printed


def test_a_password_in_an_upstream_url_is_refused_without_echoing_it(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEEDBACK_URL", "https://admin:s3cret-pw@feedback.example")
    assert main(["check-config"]) == 1
    error = capsys.readouterr().err
    assert "sources.feedback" in error and "password" in error and "s3cret-pw" not in error


# -- the API token --------------------------------------------------------------------------------------


async def test_the_api_token_guards_every_api_route_and_only_those(start_service):
    client, app = await start_service()
    routes = api_paths(app)
    assert len(routes) >= 10  # every section, the funnels, dashboard, export, refresh, OpenAPI
    refusals = {"none": {}, "wrong": {"Authorization": "Bearer nope"},
                "prefix": {"Authorization": f"Bearer {API_TOKEN[:-1]}"},
                "longer": {"Authorization": f"Bearer {API_TOKEN}0"},
                "other scheme": {"Authorization": f"Basic {API_TOKEN}"},
                "bare": {"Authorization": API_TOKEN}}
    for method, path in routes:
        for why, headers in refusals.items():
            response = await client.request(method, path, headers=headers)
            assert response.status == 401, (method, path, why)
            assert (await response.json())["error"]["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await client.request(method, path, params={"access_token": API_TOKEN})).status == 401
        accepted = await client.request(method, path, headers=AUTH)
        assert accepted.status != 401, (method, path)
    lower_scheme = await client.get("/api/v1/usage-trends", headers={"Authorization": f"bearer {API_TOKEN}"})
    assert lower_scheme.status == 200  # the scheme is case-insensitive (RFC 9110)
    for path in ("/health", "/metrics"):  # Prometheus and probes need no token
        assert (await client.get(path)).status == 200


async def test_the_token_is_compared_in_constant_time(start_service, monkeypatch):
    compared = []
    constant_time = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    client, _ = await start_service()
    assert (await client.get("/api/v1/feedback", headers={"Authorization": "Bearer guess"})).status == 401
    assert compared == [(API_TOKEN.encode(), b"guess")]


@pytest.mark.parametrize("target", [
    "//api/v1/usage-trends", "/api/v1//usage-trends", "/api/v1/./usage-trends", "/api/v1/x/../usage-trends",
    "/api/v1/%2e/usage-trends", "/API/v1/usage-trends", "/api/v1/usage-trends/", "/api/%76%31/usage-trends",
    "/api/v1/usage-trends%2f", "/./api/v1/usage-trends", "/metrics/../api/v1/usage-trends",
])
async def test_no_spelling_of_a_path_skips_the_token(start_service, target):
    client, _ = await start_service()
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    assert status in (401, 404), answer[:300]
    assert b'"active_users"' not in answer


# -- CORS ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [
    "https://portal.fawkes.idp.evil.example", "https://evil.example", "http://portal.fawkes.idp",
    "https://PORTAL.fawkes.idp", "https://portal.fawkes.idp:443", "https://portal.fawkes.idp/", "null",
    "https://portal.fawkes.idp, https://evil.example", "*",
])
async def test_cors_refuses_every_origin_not_configured_exactly(start_service, origin):
    client, _ = await start_service(**{"server.cors_allowed_origins": list(ALLOWED_ORIGINS)})
    response = await client.get("/api/v1/usage-trends", headers={**AUTH, "Origin": origin})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = await client.options("/api/v1/usage-trends", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize("origin", ALLOWED_ORIGINS)
async def test_cors_answers_a_configured_origin_preflight_included(start_service, origin):
    client, _ = await start_service(**{"server.cors_allowed_origins": list(ALLOWED_ORIGINS)})
    preflight = await client.options("/api/v1/usage-trends", headers={  # a browser sends no token here
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    response = await client.get("/api/v1/usage-trends", headers={**AUTH, "Origin": origin})
    assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"] and "Access-Control-Allow-Credentials" not in response.headers
    refused = await client.get("/api/v1/usage-trends", headers={"Origin": origin})  # no token
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == origin  # readable error


async def test_without_configured_origins_there_is_no_cors(start_service):
    client, _ = await start_service()
    origin = ALLOWED_ORIGINS[0]
    response = await client.get("/api/v1/usage-trends", headers={**AUTH, "Origin": origin})
    assert response.status == 200 and "Access-Control-Allow-Origin" not in response.headers
    preflight = await client.options("/api/v1/usage-trends", headers={"Origin": origin,
                                                                      "Access-Control-Request-Method": "GET"})
    assert preflight.status >= 400 and "Access-Control-Allow-Origin" not in preflight.headers


# -- privileges ---------------------------------------------------------------------------------------------

WITHOUT_PRIVILEGES = ["setpriv", "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
                      "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its socket inodes in /proc/net/tcp*, state LISTEN)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def files_open_for_writing(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
        if target.startswith("/") and not target.startswith("/dev/") and flags & os.O_ACCMODE != os.O_RDONLY:
            found.append(target)
    return found


@pytest.mark.slow  # the real command in a subprocess, up to its first refresh
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="dropping every capability needs Linux, root to drop them from and setpriv (util-linux)")
async def test_serves_with_no_privilege_beyond_a_port_and_its_configuration(upstreams, tmp_path):
    sealed = tmp_path / "sealed"  # what the process may read but not write: its config, and nothing else
    sealed.mkdir()
    config = sealed / "analytics.yaml"
    config.write_text(f'sources:\n  plausible: {{url: "{upstreams["plausible"].url}", site_id: "{SITE_ID}", '
                      f'api_version: v2}}\n  experimentation: {{enabled: false}}\n  feedback: {{enabled: false}}\n')
    key = sealed / "plausible.key"
    key.write_text(API_KEY)
    for path in (config, key):
        path.chmod(0o444)
    os.chown(sealed, 65534, 65534)  # nobody's, read-only: without CAP_DAC_OVERRIDE root cannot write here
    sealed.chmod(0o555)
    port = free_port()
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
                   "HOME": str(sealed), "TMPDIR": str(sealed), "PLAUSIBLE_API_KEY_FILE": str(key)}
    process = subprocess.Popen([*WITHOUT_PRIVILEGES, sys.executable, "-m", "exporter", "serve", "--config",
                                str(config), "--host", "127.0.0.1", "--port", str(port)],
                               cwd=sealed, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = await first_metrics(f"http://127.0.0.1:{port}", process)
        assert 'analytics_source_up{source="plausible"} 1.0' in metrics
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
        assert listening_ports(process.pid) == {port}
        assert files_open_for_writing(process.pid) == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=5)
    assert "Traceback" not in stderr and "Permission denied" not in stderr, stderr
    assert sorted(p.name for p in sealed.iterdir()) == ["analytics.yaml", "plausible.key"]


async def first_metrics(url: str, process: subprocess.Popen) -> str:
    """``/metrics`` once the service listens and has its first snapshot of Plausible."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            try:
                async with session.get(url + "/metrics") as response:
                    text = await response.text()
                    if 'analytics_source_up{source="plausible"}' in text:
                        return text
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("the service did not serve /metrics within 60 s")
