"""Live updates: how long after a change the last of 100 stream clients has it, against one client.

Each client subscribes to three sections; a forced refresh stores a new snapshot of each, and
the hub (``api/stream.py``) encodes each once and queues the same bytes for every subscriber.
Ours: from the refresh's answer to the last client's third message with 100 clients; baseline:
the same with one client.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench import BenchResult
from devtools.processes import free_port, serve_argv, started, wait_until_ok

CLIENTS = 100
SECTIONS = ("usage_trends", "feature_adoption", "user_segments")
TARGET_MS = 100.0


def run() -> list[BenchResult]:
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir) / "analytics.yaml"
        config.write_text("server: {min_forced_refresh_seconds: 0}\n")  # a refresh per round
        with started([*serve_argv(port, demo=True), "--config", str(config)]) as service:
            wait_until_ok(service, f"http://127.0.0.1:{port}/metrics")
            one, many = asyncio.run(_measure(f"http://127.0.0.1:{port}"))
    return [BenchResult(f"stream: change to the last of {CLIENTS} clients", many, one, "ms", target=TARGET_MS,
                        notes=(f"{len(SECTIONS)} sections each; from the forced refresh's answer to the last "
                               "client's last changed section; baseline: one client",))]


async def _measure(base: str) -> tuple[float, float]:
    import aiohttp

    query = f"sections={','.join(SECTIONS)}&time_range=30d"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        delays = []
        for clients in (1, CLIENTS):
            streams = [await session.ws_connect(f"{base}/api/v1/stream?{query}") for _ in range(clients)]
            for ws in streams:
                for _ in SECTIONS:
                    await ws.receive()
            async with session.post(f"{base}/api/v1/metrics/refresh") as response:
                await response.read()
            answered = time.perf_counter()
            await asyncio.gather(*(_changes(ws) for ws in streams))
            delays.append((time.perf_counter() - answered) * 1000)
            for ws in streams:
                await ws.close()
    return delays[0], delays[1]


async def _changes(ws) -> None:
    """The changed sections (pings skipped)."""
    seen = 0
    while seen < len(SECTIONS):
        message = await ws.receive()
        seen += '"type":"section"' in message.data
