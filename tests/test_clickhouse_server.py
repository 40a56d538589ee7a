"""The ClickHouse client against a real ClickHouse server on loopback: Debian's clickhouse-server.

Debian ships ClickHouse 18.16 (2018). It predates query parameters, so it cannot run the
service's queries (their SQL runs on the current engine in ``test_clickhouse_source.py``), but
it is a real ClickHouse HTTP interface: it shows that the requests the client sends (POST body,
URL settings, credentials in headers) are what ClickHouse expects, that ``readonly=1`` and
``max_execution_time`` are enforced by the server, how the client words the server's own errors
(never with the password), and that the URL encoding survives ClickHouse's decoding byte for byte.
The server starts once per session (``.ci/run`` installs it; without it the module is skipped,
except on CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from devtools.clickhouse import PASSWORD, USER
from devtools.processes import free_port
from exporter.config import EventsConfig
from exporter.errors import SourceError
from exporter.events.clickhouse_queries import Query, user_counts_query
from exporter.events.clickhouse_source import JSON_EACH_ROW, ClickHouseEventsSource
from exporter.health import HealthRegistry
from exporter.secrets import Secret
from tests.conftest import FakeClock

pytestmark = pytest.mark.slow  # a real clickhouse-server started for the session

STARTUP_SECONDS = 30


def _server_binary() -> str:
    binary = shutil.which("clickhouse-server") or shutil.which("clickhouse-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("clickhouse-server is not installed (.ci/run installs Debian's package)")
        pytest.skip("clickhouse-server is not installed (apt-get install clickhouse-server)")
    return binary


def _write_configuration(directory: Path, port: int) -> Path:
    (directory / "data").mkdir()
    (directory / "tmp").mkdir()
    (directory / "users.xml").write_text(f"""<yandex>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
  <users>
    <{USER}>
      <password>{escape(PASSWORD)}</password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{USER}>
  </users>
</yandex>
""")
    config = directory / "config.xml"
    config.write_text(f"""<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{port}</http_port>
  <path>{directory}/data/</path>
  <tmp_path>{directory}/tmp/</tmp_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
</yandex>
""")
    return config


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory) -> str:
    """A clickhouse-server of its own on a free loopback port, for the whole session."""
    binary = _server_binary()
    directory = tmp_path_factory.mktemp("clickhouse-server")
    port = free_port()
    config = _write_configuration(directory, port)
    log = open(directory / "server.log", "wb")
    server = subprocess.Popen([binary, f"--config-file={config}"], cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(server, url, directory / "server.log")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _wait_until_ready(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"clickhouse-server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as answer:
                if answer.read().strip() == b"Ok.":
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"clickhouse-server did not answer within {STARTUP_SECONDS} s: {log.read_text()[-2000:]}")


def source_for(url: str, *, password: str = PASSWORD, timeout: float = 5.0
               ) -> tuple[ClickHouseEventsSource, HealthRegistry]:
    health = HealthRegistry(FakeClock())
    health.register("events")
    config = EventsConfig(kind="clickhouse", url=url, user=USER, password=Secret(password),
                          query_timeout_seconds=timeout)
    return ClickHouseEventsSource(config, health), health


def rows(sql: str) -> Query[list[dict]]:
    return Query(sql, {}, lambda answer: answer)


async def test_a_real_server_accepts_the_requests_the_client_sends(clickhouse_url):
    source, health = source_for(clickhouse_url)
    try:
        (row,) = await source.select(rows("SELECT version() AS version, user FROM system.processes "
                                          "WHERE query LIKE '%probe-7f3a%'"))
        settings = await source.select(rows("SELECT name, value FROM system.settings "
                                            "WHERE name IN ('readonly', 'max_execution_time')"))
    finally:
        await source.close()
    assert row["version"].startswith("18.") and row["user"] == USER
    assert {s["name"]: s["value"] for s in settings} == {"readonly": "1", "max_execution_time": "5"}
    assert health.sources["events"].status == "up"


async def test_url_values_reach_the_server_byte_for_byte(clickhouse_url):
    """What the client puts in the URL (as it does every query parameter) is what ClickHouse reads:
    shown with a string setting, which ClickHouse stores verbatim."""
    tricky = "a+b&c=d%20#e f'\"\\;\t\n\u00e9\u2713[]{}"
    source, _ = source_for(clickhouse_url)
    try:
        answer = await source.request(
            "POST", "/", params={"format_schema": tricky},
            data=b"SELECT value FROM system.settings WHERE name = 'format_schema' FORMAT JSONEachRow",
            response_format=JSON_EACH_ROW)
    finally:
        await source.close()
    assert answer == [{"value": tricky}]


async def test_the_server_refuses_writes_under_readonly(clickhouse_url):
    source, _ = source_for(clickhouse_url)
    try:
        with pytest.raises(SourceError) as raised:
            await source.select(rows("CREATE TABLE default.should_not_exist (x UInt8) ENGINE = Memory"))
        (row,) = await source.select(rows("SELECT count() AS n FROM system.tables WHERE name = 'should_not_exist'"))
    finally:
        await source.close()
    assert "ClickHouse error 164" in str(raised.value) and "readonly" in str(raised.value).lower()
    assert int(row["n"]) == 0


async def test_the_server_stops_a_query_at_max_execution_time(clickhouse_url):
    source, health = source_for(clickhouse_url, timeout=20.0)  # the client would wait far longer
    try:
        with pytest.raises(SourceError) as raised:
            await source.request("POST", "/", params={"readonly": "1", "max_execution_time": "1"},
                                 data=b"SELECT count() FROM system.numbers FORMAT JSONEachRow",
                                 response_format=JSON_EACH_ROW)
    finally:
        await source.close()
    assert "ClickHouse error 159" in str(raised.value)  # TIMEOUT_EXCEEDED, from the server
    assert health.sources["events"].requests["server_error"] == 1  # a query error: not tried again


async def test_a_wrong_password_is_reported_without_it(clickhouse_url):
    wrong = "not-the-'password'"
    source, health = source_for(clickhouse_url, password=wrong)
    try:
        with pytest.raises(SourceError) as raised:
            await source.select(rows("SELECT 1 AS one"))
    finally:
        await source.close()
    message = str(raised.value)
    assert raised.value.code == "unauthorized"
    assert f"authentication failed for ClickHouse user '{USER}'" in message
    assert wrong not in message and PASSWORD not in message
    assert wrong not in (health.sources["events"].last_error or "")


async def test_a_server_without_query_parameters_is_named_as_too_old(clickhouse_url):
    source, _ = source_for(clickhouse_url)
    try:
        with pytest.raises(SourceError, match="does not support query parameters"):
            await source.select(user_counts_query(source.table, start=0, end=1))
    finally:
        await source.close()


async def test_an_unknown_table_names_it(clickhouse_url):
    source, _ = source_for(clickhouse_url)
    try:
        with pytest.raises(SourceError) as raised:
            await source.select(rows("SELECT count() AS n FROM default.no_such_events"))
    finally:
        await source.close()
    assert raised.value.code == "not_found" and "no_such_events" in str(raised.value)
