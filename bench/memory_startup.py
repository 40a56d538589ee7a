"""Memory and start-up of the service process, against the libraries it stands on.

- **Start-up**: from starting ``python -m exporter serve --demo`` to its first ``/metrics`` that
  answers 200 with every source up (the demo's population generated and served, the events file
  written and parsed, every published snapshot analysed). Baseline: the same for the bare aiohttp
  app of the HTTP benchmark (``bench._ceiling``): what starting Python and aiohttp costs anyway.
  Target (issue 9): under 2 s. Best of a few starts.
- **Idle RSS after the first refresh**, demo mode (the simulated upstreams run in the same
  process): resident memory a few seconds after that first scrape. Baseline: a process that only
  imports the libraries the service runs on. Target: under 120 MB.
- The events file's own figures (load speed, peak and held memory per event, appends) are
  ``bench/events_file.py``'s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time

from bench import BenchResult
from devtools.processes import Started, free_port, serve_argv, started, wait_until_ok

STARTS = 3
IDLE_SECONDS = 3.0
STARTUP_TARGET_SECONDS = 2.0
IDLE_RSS_TARGET_MB = 120.0
LIBRARIES = ("aiohttp.web", "numpy", "scipy.special", "prometheus_client", "yaml")


def run() -> list[BenchResult]:
    starts = [_demo_start() for _ in range(STARTS)]
    ceiling_start = min(_ceiling_start() for _ in range(STARTS))
    startup_s = min(seconds for seconds, _ in starts)
    idle_mb = max(rss for _, rss in starts)
    libraries_mb = _libraries_rss_mb()
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
