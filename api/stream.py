"""``GET /api/v1/stream``: the sections as they change, over aiohttp's own WebSocket (docs/api.md#live-updates).

One hub per application fans every change out; nothing polls per client:

- A **watch** is one section parameter set the hub keeps fresh: when its snapshot turns stale or
  is missing it asks for it once (the memo shares the load with any request), whatever the number
  of clients; a section nobody subscribes to is not watched, so never refreshed by the hub.
- A **topic** is a dashboard key and a time range (``funnels`` covers every configured funnel);
  it sends the section when it is first complete and again whenever one of its snapshots changes.
- The memo tells the hub of every stored or dropped value (:meth:`exporter.cache.Memo.on_change`);
  the hub then re-encodes only the topics whose snapshots changed, each once, with the bytes the
  section's endpoint serves (api/responses.py), and puts the message on each subscriber's queue.
- A **client** has a bounded queue: one that stops reading fills it and is dropped (closed with
  1008), never buffered without limit. Its writer sends ``{"type": "ping"}`` every
  :data:`PING_SECONDS`; at shutdown every stream is closed with 1001.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Hashable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from exporter.areas.base import Area, Snapshot
from exporter.areas.params import Param, time_range
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

from .dashboard import dashboard_parts
from .errors import ApiError
from .jsonio import dumps
from .params import parse_query
from .responses import Responses
from .sections import section_key, section_or_error

log = logging.getLogger(__name__)

STREAM_PATH = "/api/v1/stream"
PING = b'{"type":"ping"}'
PING_SECONDS = 25.0  # the contract asks for one at least every 30 s
HEARTBEAT_SECONDS = 60.0  # protocol pings: a peer that does not answer within half of it is gone
QUEUE_MESSAGES = 32  # messages a client may leave unread (beyond what the sockets buffer) before it is dropped
CLOSE_SECONDS = 2.0  # a close handshake longer than this is cut short (shutdown must not wait on a client)
MAX_CLIENT_MESSAGE = 4096  # clients have nothing to say; a larger frame closes the connection
STREAM_QUERY = {
    "sections": Param(None, None, description="comma-separated dashboard keys (`usage_trends,funnels`); "
                                              "default: every section", schema={"pattern": r"^[^,]+(,[^,]+)*$"}),
    "time_range": time_range("7d"),
}

Served = Snapshot | dict[str, Any] | None  # a snapshot, the error envelope its endpoint answers, or nothing yet


class Watch:
    """One section parameter set the hub keeps fresh while a topic needs it."""

    def __init__(self, hub: StreamHub, area: Area, params: dict[str, Any]) -> None:
        self.hub, self.area, self.params = hub, area, params
        self.response_key = section_key(area, params)
        self.failure: dict[str, Any] | None = None  # the envelope the last ask got, while there is no snapshot
        self.asking: asyncio.Task[None] | None = None
        self.next_ask_at = -math.inf
        self._awaited_load: asyncio.Task[Any] | None = None

    def served(self) -> Served:
        """What the section's endpoint serves right now, without waiting (None: not yet known)."""
        return self.area.peek(self.params) or self.failure

    def refresh(self, now: float) -> float:
        """Ask for the snapshot if it is missing or stale and no ask or load is under way; the
        clock time at which to look again (inf: the memo's next change will say)."""
        snapshot = self.area.peek(self.params)
        if snapshot is not None and not snapshot.stale:
            self.failure = None
            return math.inf
        if self.asking is not None:
            return math.inf
        loading = self.hub.memo.loading(self.area.key(self.params))
        if loading is not None:
            if loading is not self._awaited_load:  # a failed load changes nothing in the memo: it wakes the hub
                self._awaited_load = loading
                loading.add_done_callback(lambda _: self.hub.wake())
            return math.inf
        if now < self.next_ask_at:  # the last ask found the source failing: the memo's back-off
            return self.next_ask_at
        self.asking = asyncio.create_task(self._ask())
        return math.inf

    async def _ask(self) -> None:
        outcome = await section_or_error(self.area, self.params, self.hub.request_timeout)
        if isinstance(outcome, dict) or outcome.stale:  # nothing new to expect before the back-off ends
            self.next_ask_at = self.hub.clock() + self.hub.memo.failure_backoff
        self.failure = outcome if isinstance(outcome, dict) else None
        self.asking = None
        self.hub.wake()


class Topic:
    """A dashboard key at a time range, and the clients subscribed to it."""

    def __init__(self, section: str, requested: TimeRange, parts: list[tuple[str | None, Watch]]) -> None:
        self.section, self.requested, self.parts = section, requested, parts
        self.clients: set[Client] = set()
        self.newcomers: set[Client] = set()  # subscribed since the last message: they get the current one
        self.shown: list[Served] | None = None

    def publish(self, responses: Responses) -> list[Client]:
        """Send the section to every client if a snapshot changed, else to the newcomers only;
        the clients dropped for not reading."""
        served = [watch.served() for _, watch in self.parts]
        if any(item is None for item in served):
            return []  # sent once every part is in (a funnel section holds every funnel)
        changed = self.shown is None or not all(map(_same, served, self.shown))
        recipients = self.clients if changed else self.newcomers
        self.shown = served
        dropped = []
        if recipients:
            message = self._message(served, responses)
            dropped = [client for client in list(recipients) if not client.offer(message)]
        self.newcomers.clear()
        return dropped

    def _message(self, served: list[Served], responses: Responses) -> bytes:
        encoded = [responses.section(watch.response_key, item) if isinstance(item, Snapshot)
                   else dumps(item).encode() for (_, watch), item in zip(self.parts, served)]
        members = [member for member, _ in self.parts]
        if members == [None]:
            data = encoded[0]
        else:
            data = b"{" + b",".join(dumps(member).encode() + b":" + body for member, body in zip(members, encoded)) \
                + b"}"
        head = dumps({"type": "section", "section": self.section, "time_range": self.requested.value})
        return head[:-1].encode() + b',"data":' + data + b"}"


def _same(now: Served, before: Served) -> bool:
    if isinstance(now, Snapshot) and isinstance(before, Snapshot):
        return now.body is before.body  # one body object per load: a new one is a new snapshot
    return now == before


class Client:
    """One WebSocket: a bounded queue of messages and the task that writes them."""

    def __init__(self, ws: web.WebSocketResponse, queue_messages: int, ping_seconds: float) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_messages)
        self.ping_seconds = ping_seconds
        self.closing: tuple[int, str] | None = None  # why the server ends the stream
        self.slow = False
        self.ended = asyncio.Event()
        self._writing: asyncio.Task[None] | None = None

    def offer(self, message: bytes) -> bool:
        """Queue ``message``; False when the queue is full and the client is dropped for it."""
        if self.closing is not None:  # ending already (shutdown): nothing more is sent
            return True
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("dropping a stream client that stopped reading (%d messages unread)", self.queue.qsize())
            self.slow = True
            self.stop(WSCloseCode.POLICY_VIOLATION, f"too slow: {self.queue.qsize()} messages unread")
            return False
        return True

    def stop(self, code: int, reason: str) -> None:
        """End the stream with ``code``: the writer stops, and :meth:`serve` closes the socket."""
        if self.closing is None:
            self.closing = (code, reason)
        if self._writing is not None:
            self._writing.cancel()

    async def serve(self, transport: asyncio.BaseTransport | None) -> None:
        """Write the queued messages and read (and ignore) the client's until either side ends, then close."""
        try:
            await self._exchange()
            code, reason = self.closing or (WSCloseCode.OK, "")
            try:
                # A slow client's buffers are full: its close frame is not waited for, and what is
                # still unsent is thrown away with the connection.
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode(), drain=not self.slow),
                                       CLOSE_SECONDS)
            except (TimeoutError, ConnectionError):
                pass
        finally:
            # However this ends, cancelled included: aiohttp cancels a handler whose connection is lost
            # (``handler_cancellation``), as it is once aiohttp has answered a client's close frame, and
            # close_all would otherwise wait its whole timeout on a client that had just left.
            if self.slow and transport is not None:
                transport.abort()
            self.ended.set()

    async def _exchange(self) -> None:
        """Write and read until the client closes, the connection is lost or :meth:`stop` is called."""
        self._writing = asyncio.create_task(self._write())
        reading = asyncio.create_task(self._read())
        if self.closing is not None:  # stopped before it started
            self._writing.cancel()
        try:
            await asyncio.wait((self._writing, reading), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (self._writing, reading):
                task.cancel()
            await asyncio.gather(self._writing, reading, return_exceptions=True)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_seconds
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns a message that arrives
                # as the task is cancelled (stop, shutdown) and the cancellation is lost.
                async with asyncio.timeout(max(next_ping - loop.time(), 0.0)):
                    message = await self.queue.get()
            except TimeoutError:
                message, next_ping = PING, loop.time() + self.ping_seconds
            await self.ws.send_frame(message, WSMsgType.TEXT)  # the UTF-8 bytes as they are: no copy per client

    async def _read(self) -> None:
        async for _ in self.ws:  # control frames are answered by aiohttp; data frames mean nothing here
            pass


class StreamHub:
    """Every stream of the application, and the one loop that keeps their sections fresh and sends them."""

    def __init__(self, service: AnalyticsService, responses: Responses, *, ping_seconds: float = PING_SECONDS,
                 queue_messages: int = QUEUE_MESSAGES) -> None:
        self.service, self.responses = service, responses
        self.memo, self.clock = service.memo, service.clock
        self.request_timeout = service.config.server.request_timeout_seconds
        self.max_clients = service.config.server.max_stream_clients
        self.ping_seconds, self.queue_messages = ping_seconds, queue_messages
        self.clients: set[Client] = set()
        self._topics: dict[tuple[str, TimeRange], Topic] = {}
        self._watches: dict[Hashable, Watch] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: on every memo change (or when a snapshot turns stale), refresh what is
        watched and send what changed."""
        stop_listening = self.memo.on_change(self.wake)
        try:
            while True:
                self._wake.clear()
                try:
                    look_again = self._update()
                except Exception:  # noqa: BLE001 - a bug must not end every stream's updates for good
                    log.exception("the streams' update failed; trying again at the next change")
                    look_again = math.inf
                timeout = None if look_again == math.inf else max(look_again - self.clock(), 0.0)
                try:
                    async with asyncio.timeout(timeout):  # not wait_for: see Client._write
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            stop_listening()

    def _update(self) -> float:
        """Refresh what is watched, send what changed; the clock time to look again (inf: at the
        next change)."""
        now = self.clock()
        look_again = min([watch.refresh(now) for watch in self._watches.values()], default=math.inf)
        dropped = [client for topic in self._topics.values() for client in topic.publish(self.responses)]
        for client in dropped:  # at once: its slot is free while its connection is being cut
            self.leave(client)
        if self._watches:  # a watched snapshot turning stale is no memo change: look again then
            look_again = min(look_again, self.memo.next_change_at())
        return look_again

    def join(self, ws: web.WebSocketResponse, sections: list[str], requested: TimeRange) -> Client:
        """A new client subscribed to ``sections``; a 503 when the streams are all taken."""
        if len(self.clients) >= self.max_clients:
            raise ApiError(503, "too_many_streams", f"{self.max_clients} streams are open, the most this server "
                           "takes (server.max_stream_clients); retry later", headers={"Retry-After": "30"})
        client = Client(ws, self.queue_messages, self.ping_seconds)
        self.clients.add(client)
        for section in sections:
            topic = self._topics.get((section, requested)) or self._topic(section, requested)
            topic.clients.add(client)
            topic.newcomers.add(client)
        self.wake()
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        for key, topic in list(self._topics.items()):
            topic.clients.discard(client)
            topic.newcomers.discard(client)
            if not topic.clients:
                del self._topics[key]
        watched = {watch.area.key(watch.params) for topic in self._topics.values() for _, watch in topic.parts}
        for key in [key for key in self._watches if key not in watched]:
            del self._watches[key]

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "the server is shutting down") -> None:
        """Close every stream with ``code`` and wait (briefly) for each to end."""
        clients = list(self.clients)
        for client in clients:
            client.stop(code, reason)
        if clients:
            await asyncio.wait([asyncio.create_task(client.ended.wait()) for client in clients],
                               timeout=CLOSE_SECONDS * 2)

    def _topic(self, section: str, requested: TimeRange) -> Topic:
        parts = []
        for area, params, member in dashboard_parts(self.service, requested):
            if area.name == section:
                key = area.key(params)
                parts.append((member, self._watches.setdefault(key, Watch(self, area, params))))
        topic = self._topics[(section, requested)] = Topic(section, requested, parts)
        return topic

    def sections(self, text: str | None) -> list[str]:
        """The dashboard keys asked for (every one by default); a 400 naming the valid ones."""
        valid = list(self.service.areas)
        if text is None:
            return valid
        asked = list(dict.fromkeys(part.strip() for part in text.split(",")))
        unknown = [part for part in asked if part not in valid]
        if unknown:
            raise ApiError(400, "invalid_sections",
                           f"unknown section {unknown[0][:64]!r}; sections: {', '.join(valid)}")
        return asked


STREAMS = web.AppKey("streams", StreamHub)


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[STREAMS]
    params = parse_query(request, STREAM_QUERY)
    sections = hub.sections(params.get("sections"))
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, compress=False, timeout=CLOSE_SECONDS,
                               max_msg_size=MAX_CLIENT_MESSAGE)
    if not ws.can_prepare(request).ok:
        raise ApiError(426, "upgrade_required", "this endpoint is a WebSocket: connect with 'Upgrade: websocket'",
                       headers={"Upgrade": "websocket"})
    client = hub.join(ws, sections, params["time_range"])
    try:
        await ws.prepare(request)
        await client.serve(request.transport)
    finally:
        hub.leave(client)
    return ws
