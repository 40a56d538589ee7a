"""Serving while a PDF renders: the latency of a cached section, with PDF exports rendering back
to back in the service's worker thread, against the same requests with nothing rendering.

The PDF is pure Python (reportlab) in a thread: it takes the interpreter from the event loop in
slices (every 5 ms by default), so requests still answer, only later. One render at a time
(``api/worker.py``) bounds how much later.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench import BenchResult
from devtools.processes import free_port, serve_argv, started, wait_until_ok

REQUESTS = 300
SECTION = "/api/v1/usage-trends?time_range=30d"
EXPORT = "/api/v1/export/pdf?time_range=30d"
TARGET_RATIO = 10.0  # a cached answer at most ten times slower while a report renders


def run() -> list[BenchResult]:
    port = free_port()
    with started(serve_argv(port, demo=True)) as service:
        wait_until_ok(service, f"http://127.0.0.1:{port}/metrics")
        idle, busy, renders = asyncio.run(_measure(f"http://127.0.0.1:{port}"))
    results = []
    for name, pick in (("median", statistics.median), ("p99", lambda values: values[int(len(values) * 0.99) - 1])):
        ours, baseline = pick(sorted(busy)), pick(sorted(idle))
        results.append(BenchResult(
            f"cached section {name} latency while PDFs render", ours, baseline, "ms", target=baseline * TARGET_RATIO,
            notes=(f"{REQUESTS} sequential GET {SECTION}; ours: while {renders} PDF exports of the 30d demo dashboard "
                   "rendered back to back; baseline: the same requests with nothing rendering",)))
    return results


async def _measure(base: str) -> tuple[list[float], list[float], int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        await _latencies(session, base + SECTION, 20)  # warm: the section is cached from here on
        async with session.get(base + EXPORT) as response:  # the first render also imports reportlab
            await response.read()
        idle = await _latencies(session, base + SECTION, REQUESTS)
        stop = asyncio.Event()
        renders = 0

        async def render() -> None:
            nonlocal renders
            while not stop.is_set():
                async with session.get(base + EXPORT) as response:
                    await response.read()
                renders += 1

        rendering = asyncio.create_task(render())
        await asyncio.sleep(0.2)
        busy = await _latencies(session, base + SECTION, REQUESTS)
        stop.set()
        await rendering
    return idle, busy, renders


async def _latencies(session, url: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        started_at = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        found.append((time.perf_counter() - started_at) * 1000)
        await asyncio.sleep(0.005)
    return found
