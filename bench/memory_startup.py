"""Memory and start-up of the service process, against the libraries it stands on.

- **Start-up**: from starting ``python -m exporter serve --demo`` to its first ``/metrics`` that
  answers 200 with every source up (the demo's population generated and served, the events file
  written and parsed, every published snapshot analysed). Baseline: the same for the bare aiohttp
  app of the HTTP benchmark (``bench._ceiling``): what starting Python and aiohttp costs anyway.
  Target (issue 9): under 2 s. Best of a few starts.
- **Idle RSS after the first refresh**, demo mode (the simulated upstreams run in the same
  process): resident memory a few seconds after that first scrape. Baseline: a process that only
  imports the libraries the service runs on. Target: under 120 MB.
- **Peak RSS per million events**: the service pointed (through its environment) at the demo's
  upstreams in a process of their own, once with the demo's small events file and once with a
  generated file of 1 M events; the difference in peak resident memory (``VmHWM``: parse,
  columns and every analysis over them) per million events. Baseline: the event log's own
  columns, 16 bytes an event.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import BenchResult
from devtools.processes import Started, free_port, json_line, serve_argv, started, wait_until_ok
from exporter.demo import catalog

STARTS = 3
IDLE_SECONDS = 3.0
STARTUP_TARGET_SECONDS = 2.0
IDLE_RSS_TARGET_MB = 120.0
LIBRARIES = ("aiohttp.web", "numpy", "scipy.special", "prometheus_client", "yaml")
EVENTS = 1_000_000
EVENT_USERS = 50_000
EVENT_DAYS = 90
COLUMN_BYTES_PER_EVENT = 16  # user and event codes (int32) and the timestamp (int64)
MB = 1024 * 1024


def run() -> list[BenchResult]:
    starts = [_demo_start() for _ in range(STARTS)]
    ceiling_start = min(_ceiling_start() for _ in range(STARTS))
    startup_s = min(seconds for seconds, _ in starts)
    idle_mb = max(rss for _, rss in starts)
    libraries_mb = _libraries_rss_mb()
    per_million_mb, sizes = _peak_per_million_events()
    return [
        BenchResult(name="start-up: process start to first /metrics with every source up (demo)",
                    ours=startup_s, baseline=ceiling_start, unit="s", target=STARTUP_TARGET_SECONDS,
                    notes=(f"best of {STARTS} starts ({', '.join(f'{s:.2f}' for s, _ in starts)} s); baseline: "
                           f"the bare aiohttp app (bench._ceiling) to its first answer",)),
        BenchResult(name="memory: idle RSS after the first refresh (demo)", ours=idle_mb, baseline=libraries_mb,
                    unit="MB", target=IDLE_RSS_TARGET_MB,
                    notes=(f"VmRSS {IDLE_SECONDS:g} s after the first complete scrape, largest of {STARTS} starts; "
                           f"the simulated upstreams run in the same process; baseline: a process importing "
                           f"only {', '.join(LIBRARIES)}",)),
        BenchResult(name="memory: peak RSS per million events", ours=per_million_mb,
                    baseline=COLUMN_BYTES_PER_EVENT * 1e6 / MB, unit="MB",
                    notes=(f"VmHWM of the service (demo upstreams in their own process) after its first complete "
                           f"scrape: {sizes}; baseline: the event log's columns alone "
                           f"({COLUMN_BYTES_PER_EVENT} bytes an event)",)),
    ]


def _demo_start() -> tuple[float, float]:
    """Seconds to the first complete /metrics, and the idle RSS (MB) after it."""
    port = free_port()
    with started(serve_argv(port, demo=True)) as service:
        seconds = _first_complete_scrape(service, port)
        time.sleep(IDLE_SECONDS)
        return seconds, service.status_kib("VmRSS") / 1024


def _first_complete_scrape(service: Started, port: int, timeout: float = 120.0) -> float:
    """Seconds from the start of ``service`` to a /metrics answer with every source up."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        seconds, reply = wait_until_ok(service, f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        states = re.findall(rb'^analytics_source_up\{source="[^"]+"\} (\S+)$', reply.body, re.MULTILINE)
        if states and all(float(state) == 1.0 for state in states):
            return seconds
    raise RuntimeError("the service did not report every source up")


def _ceiling_start() -> float:
    port = free_port()
    with tempfile.NamedTemporaryFile() as body, \
            started(["-m", "bench._ceiling", str(port), f"/={body.name}:text/plain"]) as ceiling:
        return wait_until_ok(ceiling, f"http://127.0.0.1:{port}/")[0]


def _libraries_rss_mb() -> float:
    code = (f"import {', '.join(LIBRARIES)}, re; "
            "print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout) / 1024


def _peak_per_million_events() -> tuple[float, str]:
    """(MB of peak RSS per million events, how it was measured)."""
    with tempfile.TemporaryDirectory() as workdir, \
            started(["-m", "bench._upstreams", "0", workdir], stdout=subprocess.PIPE) as upstreams:
        env = json_line(upstreams)
        small_events = sum(1 for _ in gzip.open(env["EVENTS_PATH"], "rt"))
        large = Path(workdir, "large.jsonl.gz")
        write_events_file(large, EVENTS)
        small_peak = _peak_rss_mb(env)
        large_peak = _peak_rss_mb(env | {"EVENTS_PATH": str(large)})
    per_million = (large_peak - small_peak) / ((EVENTS - small_events) / 1e6)
    return per_million, (f"{small_peak:.0f} MB with the demo's {small_events:,} events, {large_peak:.0f} MB with "
                         f"{EVENTS:,} generated events ({EVENT_USERS:,} users, {EVENT_DAYS} days)")


def _peak_rss_mb(env: dict[str, str]) -> float:
    port = free_port()
    with started(serve_argv(port, demo=False), env=env) as service:
        _first_complete_scrape(service, port)
        return service.status_kib("VmHWM") / 1024


def write_events_file(path: Path, events: int, seed: int = 11) -> None:
    """``events`` JSON Lines of ``EVENT_USERS`` users over the last ``EVENT_DAYS`` days, in time
    order, with the platform's event names (so funnels, features and segments all have work)."""
    rng = np.random.default_rng(seed)
    now = int(time.time())
    stamps = np.datetime_as_string(np.sort(rng.integers(now - EVENT_DAYS * 86_400, now, events)).astype("datetime64[s]"),
                                   unit="s")
    names = [f'"{name}"' for name in catalog.EVENT_NAMES if name != catalog.PAGEVIEW]
    lines = [f'{{"user_id": "u{user:06d}", "event": {names[event]}, "timestamp": "{stamp}Z"}}\n'
             for user, event, stamp in zip(rng.integers(0, EVENT_USERS, events).tolist(),
                                           rng.integers(0, len(names), events).tolist(), stamps.tolist())]
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write("".join(lines).encode())
