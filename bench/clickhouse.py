"""ClickHouse events backend: one funnel over 10 million events, pushed down vs loaded into memory.

Both sides read the same MergeTree table (10,000,000 events, 200,000 users, 10 event names over
90 days, generated in the engine) through the same ClickHouse HTTP interface on loopback (the
engine in-process, chdb, behind ``devtools.clickhouse.ClickHouseHttpFront``):

- **pushed down** (ours): the service's ClickHouse backend asks for a 5-step, 14-day funnel over
  30 days; ClickHouse sends back one row per level and distinct set of step durations;
- **loaded** (baseline): what the file backend needs instead: every event exported over HTTP as
  JSON Lines (``user_id``, ``event``, epoch ``timestamp``: the events-file format), parsed by the
  file backend's loader into an EventLog, then the same funnel in numpy.

Both reports are checked equal, number for number. Figures: wall time (pushed down: best of 3;
loaded: one run, it takes long) and rows and bytes over the wire. Table generation is not timed.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import BenchResult
from devtools.clickhouse import PASSWORD, USER, ChdbEngine, ClickHouseHttpFront
from exporter.analysis.funnels import FunnelDefinition, FunnelStep, progress_report
from exporter.config import EventsConfig
from exporter.events.clickhouse_source import ClickHouseEventsSource
from exporter.events.file_loader import load_events_file
from exporter.events.log_funnels import funnel_reach
from exporter.health import HealthRegistry
from exporter.secrets import Secret

EVENTS = 10_000_000
USERS = 200_000
NOW = 1_780_000_000
DAY = 86_400
NAMES = ("signup", "login", "view_docs", "start_service", "service_created", "deploy", "build_ok", "deploy_done",
         "search", "settings")
FUNNEL = FunnelDefinition("onboarding", "", tuple(FunnelStep(name, name) for name in NAMES[:5]), 14 * DAY)
RANGE = (NOW - 30 * DAY, NOW + 1)
PUSHDOWN_REPEATS = 3
EXPORT = ("SELECT user_id, event, toInt64(toUnixTimestamp(timestamp)) AS timestamp "
          "FROM default.events FORMAT JSONEachRow")


def _generate(engine: ChdbEngine) -> None:
    """10 M events, deterministic: user, event and time from hashes of the row number."""
    engine.execute("CREATE TABLE default.events (user_id String, event LowCardinality(String), timestamp DateTime) "
                   "ENGINE = MergeTree ORDER BY (event, timestamp)")
    names = "[" + ", ".join(f"'{name}'" for name in NAMES) + "]"
    engine.execute(f"INSERT INTO default.events SELECT concat('user-', toString(cityHash64(number, 1) % {USERS})), "
                   f"arrayElement({names}, 1 + cityHash64(number, 2) % {len(NAMES)}), "
                   f"toDateTime({NOW} - cityHash64(number, 3) % {90 * DAY}) FROM numbers({EVENTS})")


async def _pushed_down(url: str, front: ClickHouseHttpFront) -> tuple[float, dict, int, int]:
    health = HealthRegistry()
    health.register("events")
    source = ClickHouseEventsSource(EventsConfig(kind="clickhouse", url=url, user=USER, password=Secret(PASSWORD),
                                                 query_timeout_seconds=60), health)
    best = float("inf")
    try:
        for _ in range(PUSHDOWN_REPEATS):
            started = time.perf_counter()
            reach = await source.funnel_reach(FUNNEL, range_start=RANGE[0], range_end=RANGE[1])
            report = progress_report(FUNNEL, reach, range_end=RANGE[1], now=NOW)
            best = min(best, time.perf_counter() - started)
    finally:
        await source.close()
    answer = front.requests[-1]
    return best, report, answer.response_rows, answer.response_bytes


async def _loaded(url: str, directory: Path) -> tuple[float, dict, int, int]:
    path = directory / "events.jsonl"
    started = time.perf_counter()
    size = rows = 0
    auth = {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, params={"readonly": "1"}, data=EXPORT.encode(), headers=auth) as response:
            response.raise_for_status()
            with path.open("wb") as file:
                async for chunk in response.content.iter_chunked(1 << 20):
                    file.write(chunk)
                    size += len(chunk)
                    rows += chunk.count(b"\n")
    log = (await asyncio.to_thread(load_events_file, str(path))).log
    reach = funnel_reach(log, FUNNEL, range_start=RANGE[0], range_end=RANGE[1])
    report = progress_report(FUNNEL, reach, range_end=RANGE[1], now=NOW)
    return time.perf_counter() - started, report, rows, size


async def _measure(directory: Path) -> list[BenchResult]:
    engine = ChdbEngine(directory / "clickhouse")
    _generate(engine)
    front = ClickHouseHttpFront(engine)
    runner = web.AppRunner(front.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        seconds, report, rows, size = await _pushed_down(url, front)
        base_seconds, base_report, base_rows, base_size = await _loaded(url, directory)
    finally:
        await runner.cleanup()
    same = "equal, every number" if report == base_report else "DIFFERENT (a bug)"
    notes = (f"{EVENTS:,} events, {USERS:,} users; funnel of {len(FUNNEL.steps)} steps, window 14 d, entries over "
             f"30 d: {report['total_users']:,} users entered, {report['completed_users']:,} completed; the two "
             f"reports are {same}",
             "pushed down: the service's ClickHouse backend, best of 3 runs; loaded: HTTP export of every event as "
             "JSON Lines, the file backend's loader, numpy funnel (one run)")
    return [
        BenchResult("clickhouse funnel 10M events: wall time", seconds, base_seconds, "s", notes=notes),
        BenchResult("clickhouse funnel 10M events: rows over the wire", rows, base_rows, "rows"),
        BenchResult("clickhouse funnel 10M events: bytes over the wire", size / 1e6, base_size / 1e6, "MB"),
    ]


def run() -> list[BenchResult]:
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(_measure(Path(directory)))
