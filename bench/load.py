"""Bounded load on loopback (issue 8, item 5): 1,000 connections on the cached responses, and no leak.

The service runs as ``python -m exporter serve --demo`` in its own process. Once its caches are
warm, wrk holds 1,000 concurrent connections on cached ``/metrics`` and ``/api/v1/dashboard``
(alternating request by request) in runs of a fixed duration, until 200,000 requests have been
answered. Every run must be free of errors: no connect, read or write error, no non-2xx answer,
no request left unanswered for wrk's (generous) timeout. The service's resident memory is read
after the first 10,000 requests and again at the end; a leak of even a few hundred bytes a
request would put the second more than 10% above the first.

``run()`` reports requests per second and p99 latency for ``python -m bench``;
``tests/test_load.py`` asserts only the errors and the memory growth, never the speed.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import BenchResult
from bench._processes import (
    Run,
    free_port,
    get,
    parse_wrk_report,
    serve_argv,
    started,
    wait_until_ok,
    wrk_path,
)

CONNECTIONS = 1_000
THREADS = 2
PATHS = ("/metrics", "/api/v1/dashboard")
WARM_REQUESTS = 10_000
TOTAL_REQUESTS = 200_000
SECONDS_PER_RUN = 5
MAX_MEMORY_GROWTH = 0.10
# Long enough that only a request that never comes back counts as a timeout: slowness on a busy
# machine is not an error here (speed is what the figures report, not what the test asserts).
WRK_TIMEOUT_SECONDS = 30
# wrk's Lua hook: each connection's requests alternate between the paths.
ALTERNATE = """\
local paths = {%s}
local sent = 0
request = function()
  sent = sent + 1
  return wrk.format("GET", paths[sent %% #paths + 1])
end
"""


@dataclass(frozen=True)
class Soak:
    """Every run, and the service's resident memory after the warm-up and at the end."""

    warm_up: tuple[Run, ...]
    runs: tuple[Run, ...]
    rss_after_warm_up_kib: int
    rss_at_end_kib: int

    @property
    def requests(self) -> int:
        return sum(run.requests for run in (*self.warm_up, *self.runs))

    @property
    def errors(self) -> int:
        return sum(run.errors for run in (*self.warm_up, *self.runs))

    @property
    def memory_growth(self) -> float:
        """Resident memory at the end relative to after the warm-up, less one (0.05: 5% more)."""
        return self.rss_at_end_kib / self.rss_after_warm_up_kib - 1

    @property
    def requests_per_second(self) -> float:
        """Over the runs after the warm-up."""
        return sum(run.requests for run in self.runs) / sum(run.seconds for run in self.runs)

    @property
    def worst_p99_ms(self) -> float:
        return max(run.p99_ms for run in self.runs)


def soak(*, total_requests: int = TOTAL_REQUESTS, warm_requests: int = WARM_REQUESTS,
         seconds_per_run: int = SECONDS_PER_RUN) -> Soak:
    """Start the service, warm its caches, and load it until ``total_requests`` have been answered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started(serve_argv(port, demo=True)) as service, tempfile.TemporaryDirectory() as scratch:
        wait_until_ok(service, f"{base}/metrics")
        for path in PATHS:  # computed now, so every request under load is answered from the cache
            reply = get(base + path)
            if reply.status != 200:
                raise RuntimeError(f"{path} answered {reply.status}: {reply.body[:200]!r}")
        script = Path(scratch, "alternate.lua")
        script.write_text(ALTERNATE % ", ".join(f'"{path}"' for path in PATHS))
        warm_up = _runs_until(warm_requests, base, script, seconds=1)
        rss_after_warm_up = service.status_kib("VmRSS")
        runs = _runs_until(total_requests - sum(run.requests for run in warm_up), base, script,
                           seconds=seconds_per_run)
        rss_at_end = service.status_kib("VmRSS")
    return Soak(warm_up, runs, rss_after_warm_up, rss_at_end)


def _runs_until(requests: int, base: str, script: Path, *, seconds: int) -> tuple[Run, ...]:
    """wrk runs of ``seconds`` each until ``requests`` have been answered."""
    runs: list[Run] = []
    while sum(run.requests for run in runs) < requests:
        runs.append(_wrk(base, script, seconds))
    return tuple(runs)


def _wrk(base: str, script: Path, seconds: int) -> Run:
    argv = [wrk_path(), f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_SECONDS}s",
            "--latency", "-s", str(script), base]
    return parse_wrk_report(subprocess.run(argv, capture_output=True, text=True, check=True,
                                       timeout=seconds + WRK_TIMEOUT_SECONDS + 30).stdout)


def run() -> list[BenchResult]:
    result = soak()
    how = (f"wrk -t{THREADS} -c{CONNECTIONS}, {SECONDS_PER_RUN} s runs alternating {' and '.join(PATHS)} "
           f"(cached) until {result.requests:,} requests; {result.errors} errors")
    return [
        BenchResult(name="load: 1,000 connections, throughput", ours=result.requests_per_second, baseline=None,
                    unit="req/s", better="higher", notes=(how,)),
        BenchResult(name="load: 1,000 connections, p99 latency (worst run)", ours=result.worst_p99_ms,
                    baseline=None, unit="ms"),
        BenchResult(name="load: resident memory growth, 10k -> 200k requests", ours=100 * result.memory_growth,
                    baseline=None, unit="%", target=100 * MAX_MEMORY_GROWTH,
                    notes=(f"VmRSS {result.rss_after_warm_up_kib:,} KiB after the warm-up, "
                           f"{result.rss_at_end_kib:,} KiB at the end",)),
    ]
