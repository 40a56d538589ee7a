"""Bounded load on loopback (issue 8, item 5): 1,000 connections on the cached responses, and no leak.

The service runs as ``python -m exporter serve --demo`` in its own process. Once its caches are
warm, wrk holds 1,000 concurrent connections on cached ``/metrics`` and ``/api/v1/dashboard``
(alternating request by request) in runs of a fixed duration, until 200,000 requests have been
answered. Every run must be free of errors: no connect, read or write error, no non-2xx answer,
no request left unanswered for wrk's (generous) timeout. Every answer must be the document asked
for: wrk's script checks each one and counts them by document. The service's resident memory is
read after the first 10,000 requests and again at the end; a leak of even a few hundred bytes a
request would put the second more than 10% above the first.

``bench/load.py`` reports requests per second and p99 latency for ``python -m bench``;
``tests/test_load.py`` asserts the errors, the documents and the memory growth, never the speed.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import free_port, get, serve_argv, started, wait_until_ok
from devtools.wrk import Run, parse_wrk_report, wrk

CONNECTIONS = 1_000
THREADS = 2
# Each path, and how a whole document of its own begins and ends: enough to tell the two apart, and
# either from an error envelope, an empty body or a truncated one.
DOCUMENTS = {
    "/metrics": ("# HELP analytics_", "\n"),  # Prometheus' text format: a newline after the last sample
    "/api/v1/dashboard": ('{"time_range":', "}"),  # one JSON object
}
WARM_REQUESTS = 10_000
TOTAL_REQUESTS = 200_000
SECONDS_PER_RUN = 5
MAX_MEMORY_GROWTH = 0.10
# Long enough that only a request that never comes back counts as a timeout: slowness on a busy
# machine is not an error here (speed is what the figures report, not what the test asserts).
WRK_TIMEOUT_SECONDS = 30
# wrk's Lua hooks. A thread's requests alternate between the paths. An answer counts for the
# document it is if it is a 200 that begins and ends as that document does; wrk runs a Lua state
# per thread, so done() adds up the threads' counts.
SCRIPT = """\
local documents = {%s}  -- {path, first bytes, last byte} each
local threads = {}
local sent = 0
answers = {}  -- a global: done() reads each thread's through thread:get

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  sent = sent + 1
  return wrk.format("GET", documents[sent %% #documents + 1][1])
end

function response(status, headers, body)
  if status ~= 200 then return end
  for i, document in ipairs(documents) do
    if body:sub(1, #document[2]) == document[2] and body:sub(-1) == document[3] then
      answers[i] = (answers[i] or 0) + 1
      return
    end
  end
end

function done(summary, latency, requests)
  for i, document in ipairs(documents) do
    local answered = 0
    for _, thread in ipairs(threads) do
      answered = answered + (thread:get("answers")[i] or 0)
    end
    io.write(string.format("document %%s: %%d\\n", document[1], answered))
  end
end
"""


@dataclass(frozen=True)
class LoadRun:
    """One wrk run, and how many of its answers were each path's document (in ``DOCUMENTS`` order)."""

    report: Run
    documents: tuple[int, ...]


@dataclass(frozen=True)
class Soak:
    """Every run, and the service's resident memory after the warm-up and at the end."""

    warm_up: tuple[LoadRun, ...]
    runs: tuple[LoadRun, ...]
    rss_after_warm_up_kib: int
    rss_at_end_kib: int

    @property
    def all_runs(self) -> tuple[LoadRun, ...]:
        return (*self.warm_up, *self.runs)

    @property
    def requests(self) -> int:
        return sum(run.report.requests for run in self.all_runs)

    @property
    def errors(self) -> int:
        return sum(run.report.errors for run in self.all_runs)

    @property
    def memory_growth(self) -> float:
        """Resident memory at the end relative to after the warm-up, less one (0.05: 5% more)."""
        return self.rss_at_end_kib / self.rss_after_warm_up_kib - 1

    @property
    def requests_per_second(self) -> float:
        """Over the runs after the warm-up."""
        return sum(run.report.requests for run in self.runs) / sum(run.report.seconds for run in self.runs)

    @property
    def worst_p99_ms(self) -> float:
        return max(run.report.p99_ms for run in self.runs)


def soak(*, total_requests: int = TOTAL_REQUESTS, warm_requests: int = WARM_REQUESTS,
         seconds_per_run: int = SECONDS_PER_RUN) -> Soak:
    """Start the service, warm its caches, and load it until ``total_requests`` have been answered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started(serve_argv(port, demo=True)) as service, tempfile.TemporaryDirectory() as scratch:
        wait_until_ok(service, f"{base}/metrics")
        for path in DOCUMENTS:  # computed now, so every request under load is answered from the cache
            reply = get(base + path)
            if reply.status != 200:
                raise RuntimeError(f"{path} answered {reply.status}: {reply.body[:200]!r}")
        script = Path(scratch, "documents.lua")
        script.write_text(_script())
        warm_up = _runs_until(warm_requests, base, script, seconds=1)
        rss_after_warm_up = service.status_kib("VmRSS")
        runs = _runs_until(total_requests - sum(run.report.requests for run in warm_up), base, script,
                           seconds=seconds_per_run)
        rss_at_end = service.status_kib("VmRSS")
    return Soak(warm_up, runs, rss_after_warm_up, rss_at_end)


def _script() -> str:
    """The Lua script, ``DOCUMENTS`` written in as a table (ASCII strings: JSON's escapes are Lua's)."""
    return SCRIPT % ", ".join("{" + ", ".join(map(json.dumps, (path, *ends))) + "}" for path, ends in DOCUMENTS.items())


def _runs_until(requests: int, base: str, script: Path, *, seconds: int) -> tuple[LoadRun, ...]:
    """wrk runs of ``seconds`` each until ``requests`` have been answered."""
    runs: list[LoadRun] = []
    while sum(run.report.requests for run in runs) < requests:
        output = wrk(base, threads=THREADS, connections=CONNECTIONS, seconds=seconds,
                     timeout_seconds=WRK_TIMEOUT_SECONDS, script=script)
        counted = dict(re.findall(r"^document (\S+): (\d+)$", output, re.MULTILINE))
        runs.append(LoadRun(parse_wrk_report(output), tuple(int(counted[path]) for path in DOCUMENTS)))
    return tuple(runs)
