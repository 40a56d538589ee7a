"""gather_or_cancel: a refresh that fails stops its other fetches."""

from __future__ import annotations

import asyncio

import pytest

from exporter.concurrency import gather_or_cancel
from exporter.errors import SourceError


async def test_results_in_order():
    async def value(v, delay):
        await asyncio.sleep(delay)
        return v

    assert await gather_or_cancel(value(1, 0.02), value(2, 0.0), value(3, 0.01)) == [1, 2, 3]


async def test_first_failure_cancels_the_rest_and_is_raised_as_is():
    cancelled = asyncio.Event()

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing():
        raise SourceError("plausible", "HTTP 502")

    with pytest.raises(SourceError, match="HTTP 502"):
        await gather_or_cancel(slow(), failing())
    assert cancelled.is_set()
