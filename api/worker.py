"""CPU-bound work of the API (rendering a PDF or a workbook) off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Worker:
    """Runs a function in a worker thread, one at a time.

    A PDF is about half a second of pure Python (docs/reports.md#cost-in-the-service-benchreport_renderpy): in a thread
    the event loop keeps serving, and one at a time, concurrent renders queue rather than multiply
    the contention for the interpreter and the memory the report libraries take while rendering.
    """

    def __init__(self) -> None:
        self._slot = asyncio.Semaphore(1)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        async with self._slot:
            return await asyncio.to_thread(function, *args)
