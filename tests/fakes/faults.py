"""Fault injection for the fake upstreams: a switch in front of a fake, and a fake that can go away.

:class:`FaultSwitch` is an aiohttp middleware added to a fake's application: it passes requests
through until a fault is armed, then answers in place of the fake, mangles the fake's answer, or
delays it (for a while, or until the test releases it).
:class:`Upstream` serves a fake behind its switch on loopback, and can stop and restart it on the
same port (connection refused, then back).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

HUGE_BODY = 100 * 1024 * 1024  # what the "huge" faults would send if nobody stopped them
HTML_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1><hr>nginx</body></html>"


@dataclass
class FaultSwitch:
    """A middleware in front of a fake: passes requests through, or answers with the armed fault."""

    fault: str | None = None
    delay_seconds: float = 10.0  # how long "slow" waits before letting the fake answer
    released: asyncio.Event = field(default_factory=asyncio.Event)  # what "hold" waits for
    requests: int = 0
    streamed: list[int] = field(default_factory=list)  # bytes sent by each finished "huge" answer
    streams_open: int = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        fault = self.fault
        if fault is None:
            return await handler(request)
        if fault == "slow":
            await asyncio.sleep(self.delay_seconds)
            return await handler(request)
        if fault == "hold":  # the fake answers once the test sets ``released``
            await self.released.wait()
            return await handler(request)
        if fault == "429":  # Plausible's answer: JSON, and no Retry-After header
            return web.json_response({"error": "Too many API requests in the last hour"}, status=429)
        if fault.isdigit():  # a proxy's error page
            status = HTTPStatus(int(fault))
            return web.Response(status=status, text=HTML_PAGE.format(f"{status.value} {status.phrase}"),
                                content_type="text/html")
        if fault == "truncated":
            return web.Response(text='{"results": [{"metrics": [94, 1', content_type="application/json")
        if fault == "echo_auth":  # a careless upstream quotes the credentials it was sent in its error
            credentials = request.headers.get("Authorization", "")
            message = f"rejected Authorization: {credentials!r}"
            return web.json_response({"error": message, "detail": message}, status=400)
        if fault == "wrong_shape":
            return web.json_response({"message": "ok"})
        if fault == "wrong_types":  # the fake's real answer, every number turned into a string
            answer = await handler(request)
            return web.json_response(_numbers_as_strings(json.loads(answer.body)), status=answer.status)
        if fault.startswith("huge"):
            return await self._huge(request, declared=fault == "huge_declared")
        raise AssertionError(f"unknown fault {fault}")

    async def _huge(self, request: web.Request, *, declared: bool) -> web.StreamResponse:
        """100 MB of JSON whitespace, made chunk by chunk as the client reads it (never held whole)."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declared:
            response.content_length = HUGE_BODY
        else:
            response.enable_chunked_encoding()  # no length: the client must count as it reads
        await response.prepare(request)
        chunk, sent = b" " * 65536, 0
        self.streams_open += 1
        try:
            while sent < HUGE_BODY:
                await response.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            pass  # the client hung up: that is the behaviour under test
        finally:
            self.streams_open -= 1
            self.streamed.append(sent)
        return response

    async def streams_finished(self) -> None:
        async with asyncio.timeout(5):
            while self.streams_open:
                await asyncio.sleep(0.01)


def _numbers_as_strings(data: Any) -> Any:
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, int | float):
        return str(data)
    if isinstance(data, dict):
        return {key: _numbers_as_strings(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_numbers_as_strings(value) for value in data]
    return data


@dataclass
class Upstream:
    """One fake upstream on loopback behind its fault switch; it can go away and come back."""

    fake: Any
    start_server: Any  # the aiohttp_server fixture
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    port: int | None = None
    server: Any = None

    async def serve(self) -> None:
        """Serve the fake (on the same port as before, if it ran before)."""
        app = self.fake.app()
        app.middlewares.append(self.switch.middleware)
        self.server = await self.start_server(app, port=self.port)
        self.port = self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def arm(self, fault: str | None) -> None:
        """Start a fault, or end it with None. Connection refused is the server really gone."""
        if fault == "refused":
            await self.server.close()
        elif self.server.closed:
            await self.serve()
        self.switch.fault = None if fault == "refused" else fault
