"""The memo (docs/api.md#caching-and-freshness): TTL, single flight, stale-while-revalidate, hard limit, no
failed data."""

from __future__ import annotations

import asyncio

import pytest

from exporter.cache import Memo
from tests.conftest import FakeClock


class Loader:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls = 0
        self.fail = fail
        self.delay = delay

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("upstream down")
        return self.calls


async def test_fresh_value_is_served_without_reloading():
    clock = FakeClock(1000.0)
    memo, load = Memo(300, clock=clock), Loader()
    assert (await memo.get("k", load)).value == 1
    clock.advance(299)
    cached = await memo.get("k", load)
    assert (cached.value, cached.stale, load.calls) == (1, False, 1)


async def test_concurrent_cold_requests_share_one_load():
    memo, load = Memo(300, clock=FakeClock()), Loader(delay=0.05)
    results = await asyncio.gather(*(memo.get("k", load) for _ in range(100)))
    assert load.calls == 1
    assert {r.value for r in results} == {1}


async def test_stale_value_served_while_revalidating_then_replaced():
    clock = FakeClock(1000.0)
    memo, load = Memo(300, clock=clock), Loader(delay=0.01)
    await memo.get("k", load)
    clock.advance(301)
    stale = await memo.get("k", load)
    assert (stale.value, stale.stale) == (1, True)  # answered at once, not after the reload
    await asyncio.sleep(0.05)
    fresh = await memo.get("k", load)
    assert (fresh.value, fresh.stale, load.calls) == (2, False, 2)


async def test_value_dropped_after_twice_the_ttl():
    clock = FakeClock(1000.0)
    memo = Memo(300, clock=clock)
    await memo.get("k", Loader())
    clock.advance(600)
    assert memo.peek("k") is None
    with pytest.raises(RuntimeError):
        await memo.get("k", Loader(fail=True))


async def test_failure_is_not_memoized_and_stale_value_survives_it():
    clock = FakeClock(1000.0)
    memo = Memo(300, clock=clock)
    await memo.get("k", Loader())
    clock.advance(400)
    failing = Loader(fail=True)
    assert (await memo.get("k", failing)).value == 1  # stale, within the hard limit
    await asyncio.sleep(0.01)
    assert failing.calls == 1
    assert memo.peek("k").value == 1  # the failure did not replace the data


async def test_failure_backoff_then_recovery():
    clock = FakeClock(1000.0)
    memo = Memo(300, clock=clock)
    failing = Loader(fail=True)
    with pytest.raises(RuntimeError):
        await memo.get("k", failing)
    with pytest.raises(RuntimeError):
        await memo.get("k", failing)  # within the back-off: answered without a new call
    assert failing.calls == 1
    clock.advance(memo.failure_backoff)
    assert (await memo.get("k", Loader())).value == 1


async def test_refresh_reloads_even_when_fresh():
    memo, load = Memo(300, clock=FakeClock()), Loader()
    await memo.get("k", load)
    assert (await memo.refresh("k", load)).value == 2
