"""Bounded load on loopback (issue 8, item 5): the figures of the soak in ``devtools/soak.py``.

``run()`` reports requests per second and p99 latency for ``python -m bench`` (``tests/test_load.py``
asserts what must hold under the same load, never the speed), and the growth of the service's
resident memory between the warm-up and the end.
"""

from __future__ import annotations

from bench import BenchResult
from devtools.soak import CONNECTIONS, DOCUMENTS, MAX_MEMORY_GROWTH, SECONDS_PER_RUN, THREADS, soak


def run() -> list[BenchResult]:
    result = soak()
    how = (f"wrk -t{THREADS} -c{CONNECTIONS}, {SECONDS_PER_RUN} s runs alternating {' and '.join(DOCUMENTS)} "
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
