"""Bounded load on loopback (issue 8, item 5); the load is ``devtools/soak.py``, its figures ``bench/load.py``.

1,000 concurrent connections on cached ``/metrics`` and ``/api/v1/dashboard``, in runs of a fixed
duration until 200,000 requests have been answered: not one error, every answer the document it
was asked for, and resident memory at the end within 10% of what it was after the first 10,000
requests. Speed is reported by ``python -m bench``, never asserted.
"""

from __future__ import annotations

import pytest

from devtools.soak import CONNECTIONS, MAX_MEMORY_GROWTH, THREADS, soak
from tests.tools import require_tool

pytestmark = pytest.mark.slow  # minutes of wrk load on the real command


def test_a_thousand_connections_on_cached_responses_without_errors_or_leak():
    require_tool("wrk")
    result = soak()
    assert result.errors == 0, [run for run in result.all_runs if run.report.errors]
    for run in result.all_runs:
        # The soak goes on until wrk has counted 200,000 answers, so that count proves nothing by
        # itself. wrk counts every answer it could parse, whatever its body; its script counted those
        # that were a 200 carrying a whole /metrics or dashboard document. An empty, truncated or
        # error body, even under a 200, falls short of the count here.
        assert sum(run.documents) == run.report.requests, run
        # Requests alternate between the two paths, so each document answers half of them, give or
        # take the requests still in flight when the run stopped: a server that answered one path
        # with the other's document would be far off.
        assert abs(run.documents[0] - run.documents[1]) <= CONNECTIONS + THREADS, run
    assert result.memory_growth <= MAX_MEMORY_GROWTH, (result.rss_after_warm_up_kib, result.rss_at_end_kib)
