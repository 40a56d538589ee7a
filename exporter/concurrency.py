"""Running the independent fetches of one refresh concurrently."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable


async def gather_or_cancel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Like ``asyncio.gather``, but the first failure cancels the others and is raised as is.

    A refresh that has already failed should not keep spending upstream requests (Plausible's
    hourly budget) on results it will throw away.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(a)) for a in awaitables]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
