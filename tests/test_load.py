"""Bounded load on loopback (issue 8, item 5); the load and its figures are in ``bench/load.py``.

1,000 concurrent connections on cached ``/metrics`` and ``/api/v1/dashboard``, in runs of a fixed
duration until 200,000 requests have been answered: not one error, and resident memory at the
end within 10% of what it was after the first 10,000 requests. Speed is reported by
``python -m bench``, never asserted.
"""

from __future__ import annotations

from bench.load import MAX_MEMORY_GROWTH, TOTAL_REQUESTS, soak
from tests.tools import require_tool


def test_a_thousand_connections_on_cached_responses_without_errors_or_leak():
    require_tool("wrk")
    result = soak()
    assert result.requests >= TOTAL_REQUESTS
    assert result.errors == 0, [run for run in (*result.warm_up, *result.runs) if run.errors]
    assert result.memory_growth <= MAX_MEMORY_GROWTH, (result.rss_after_warm_up_kib, result.rss_at_end_kib)
