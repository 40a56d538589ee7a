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

The cost of a breakdown: one event in ten carries a ``team`` (20 values) in the table's
``properties`` map; the same pushed-down questions (the funnel, weekly first-time retention
over 12 weeks, stickiness) are asked plain and broken down by team (best of 3 each). The
breakdown aggregates each user's latest team over the whole history's events carrying one and
joins it to the per-user relation; the groups' numbers are checked to add up to the plain answer's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np
from aiohttp import web

from bench import BenchResult
from devtools.clickhouse import PASSWORD, USER, ChdbEngine, ClickHouseHttpFront
from exporter.analysis.breakdowns import EVERYONE, Selection
from exporter.analysis.funnels import FunnelDefinition, FunnelStep, progress_report
from exporter.analysis.retention import RetentionQuery, interval_grid
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
T = TypeVar("T")
EXPORT = ("SELECT user_id, event, toInt64(toUnixTimestamp(timestamp)) AS timestamp "
          "FROM default.events FORMAT JSONEachRow")


TEAMS = 20
BY_TEAM = Selection(breakdown="team")


def _generate(engine: ChdbEngine) -> None:
    """10 M events, deterministic: user, event, time and team from hashes of the row number."""
    engine.execute("CREATE TABLE default.events (user_id String, event LowCardinality(String), timestamp DateTime, "
                   "properties Map(String, String)) ENGINE = MergeTree ORDER BY (event, timestamp)")
    names = "[" + ", ".join(f"'{name}'" for name in NAMES) + "]"
    engine.execute(f"INSERT INTO default.events SELECT concat('user-', toString(cityHash64(number, 1) % {USERS})), "
                   f"arrayElement({names}, 1 + cityHash64(number, 2) % {len(NAMES)}), "
                   f"toDateTime({NOW} - cityHash64(number, 3) % {90 * DAY}), "
                   f"if(cityHash64(number, 4) % 10 = 0, "
                   f"map('team', concat('team-', toString(cityHash64(number, 5) % {TEAMS}))), map()) "
                   f"FROM numbers({EVENTS})")


def _source(url: str) -> ClickHouseEventsSource:
    health = HealthRegistry()
    health.register("events")
    return ClickHouseEventsSource(EventsConfig(kind="clickhouse", url=url, user=USER, password=Secret(PASSWORD),
                                               query_timeout_seconds=60), health)


async def _best_of(repeats: int, ask: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """The smallest wall time of ``repeats`` answers to ``ask`` (noise only ever adds time), and the answer."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        answer = await ask()
        best = min(best, time.perf_counter() - started)
    return best, answer


async def _pushed_down(url: str, front: ClickHouseHttpFront) -> tuple[float, dict, int, int]:
    source = _source(url)

    async def report_of_funnel() -> dict:
        reach = await source.funnel_reach(FUNNEL, range_start=RANGE[0], range_end=RANGE[1])
        return progress_report(FUNNEL, reach, range_end=RANGE[1], now=NOW)

    try:
        best, report = await _best_of(PUSHDOWN_REPEATS, report_of_funnel)
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


def _breakdown_questions(source: ClickHouseEventsSource) -> dict[str, tuple[Callable, Callable]]:
    """Per question: how to ask it under a selection, and the total of its answer over the groups
    (which a breakdown must leave unchanged)."""
    grid = interval_grid("week", range_start=NOW - 12 * 7 * DAY, range_end=NOW + 1, now=NOW)
    retention = RetentionQuery("first_time", "signup", None)
    return {
        "funnel": (lambda selection: source.funnel_reach(FUNNEL, range_start=RANGE[0], range_end=RANGE[1],
                                                         selection=selection),
                   lambda reach: np.bincount(reach.levels).tolist()),
        "weekly retention": (lambda selection: source.retention_counts(retention, grid, selection),
                             lambda counts: counts.retained.sum(axis=0).tolist()),
        "stickiness": (lambda selection: source.stickiness_counts(now=NOW, selection=selection),
                       lambda counts: counts.daily.sum(axis=0).tolist()),
    }


async def _breakdown_cost(url: str) -> list[BenchResult]:
    """Each question broken down by team (ours) against the same question plain (baseline)."""
    source = _source(url)
    results = []
    try:
        for question, (ask, total) in _breakdown_questions(source).items():
            plain_seconds, plain = await _best_of(PUSHDOWN_REPEATS, lambda: ask(EVERYONE))
            seconds, grouped = await _best_of(PUSHDOWN_REPEATS, lambda: ask(BY_TEAM))
            same = "add up to the plain answer" if total(grouped) == total(plain) else "DIFFER from it (a bug)"
            notes = (f"{question}: {len(grouped.values)} groups (teams, then (none)) whose numbers {same}; "
                     "best of 3 each",)
            results.append(BenchResult(f"clickhouse {question} 10M events: by team vs plain", seconds, plain_seconds,
                                       "s", notes=notes))
    finally:
        await source.close()
    return results


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
        breakdowns = await _breakdown_cost(url)
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
        *breakdowns,
    ]


def run() -> list[BenchResult]:
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(_measure(Path(directory)))
