"""``GET /api/v1/stream``: the sections as their endpoints serve them, at once and on every change,
pings, the handshake's refusals (400, 401, 503), a client that stops reading dropped while the
others keep receiving, and 1001 at shutdown; with aiohttp's own WebSocket client against the app
over the demo's simulated upstreams."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import socket

import aiohttp
import pytest
from aiohttp import WSMsgType

from api.app import create_app
from api.keys import RESPONSES
from api.stream import STREAMS, Client, StreamHub
from exporter.areas.params import with_defaults
from exporter.cli import demo_overrides
from exporter.config import load_config
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange
from tests.conftest import service_config
from tests.fakes.faults import Upstream

API_TOKEN = "stream-token-0123456789"
RECEIVE_SECONDS = 30.0  # generous: a cold section is computed first on a busy machine
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}


@pytest.fixture
def make_stream_client(aiohttp_client, demo_upstreams, clock):
    """``await make_stream_client(ping_seconds=..., **config overrides)`` -> (test client, service)."""

    async def make(ping_seconds: float | None = None, **overrides):
        config = load_config(environ={}, overrides=demo_overrides(demo_upstreams) | overrides)
        service = AnalyticsService(config, clock=clock)
        app = create_app(service)
        if ping_seconds is not None:
            app[STREAMS] = StreamHub(service, app[RESPONSES], ping_seconds=ping_seconds)
        return await aiohttp_client(app), service

    return make


async def receive(ws) -> dict:
    """The next message that is not a ping, parsed, with its text as sent."""
    while True:
        message = await ws.receive(timeout=RECEIVE_SECONDS)
        assert message.type == WSMsgType.TEXT, message
        parsed = json.loads(message.data)
        if parsed["type"] != "ping":
            return parsed | {"text": message.data}


def framed(section: str, time_range: str, data: str) -> str:
    return f'{{"type":"section","section":"{section}","time_range":"{time_range}","data":{data}}}'


async def test_each_section_is_sent_at_once_as_the_same_bytes_its_endpoint_serves(make_stream_client):
    client, service = await make_stream_client()
    async with client.ws_connect("/api/v1/stream?sections=usage_trends,funnels&time_range=30d") as ws:
        received = {message["section"]: message["text"] for message in [await receive(ws), await receive(ws)]}
        # The clock stands still in this test: the endpoints' bytes (ages included) are the very ones sent.
        usage = await (await client.get("/api/v1/usage-trends?time_range=30d")).text()
        assert received["usage_trends"] == framed("usage_trends", "30d", usage)
        funnels = [(name, await (await client.get(f"/api/v1/funnel/{name}?time_range=30d")).text())
                   for name in service.areas["funnels"].members()]
        members = ",".join(f'"{name}":{body}' for name, body in funnels)
        assert received["funnels"] == framed("funnels", "30d", "{" + members + "}")
        dashboard = await (await client.get("/api/v1/dashboard?time_range=30d")).json()
        assert json.loads(received["funnels"])["data"] == dashboard["funnels"]


async def test_every_section_by_default_and_a_failing_one_as_its_error_envelope(make_stream_client):
    client, service = await make_stream_client(**{"sources.feedback.enabled": False})
    async with client.ws_connect("/api/v1/stream") as ws:
        received = {}
        while len(received) < len(service.areas):
            message = await receive(ws)
            received[message["section"]] = message
    assert set(received) == set(service.areas) and {m["time_range"] for m in received.values()} == {"7d"}
    feedback = await client.get("/api/v1/feedback?time_range=7d")
    assert feedback.status == 503 and received["feedback"]["data"] == await feedback.json()


async def test_a_new_snapshot_is_pushed_to_every_subscriber(make_stream_client, clock):
    client, service = await make_stream_client()
    path = "/api/v1/stream?sections=usage_trends"
    async with client.ws_connect(path) as first, client.ws_connect(path) as second:
        before = [await receive(first), await receive(second)]
        clock.advance(service.config.cache.ttl_seconds + 1)
        # A request finds the snapshot stale and starts its refresh; the new one reaches both streams.
        assert (await (await client.get("/api/v1/usage-trends")).json())["stale"] is True
        after = [await receive(first), await receive(second)]
    assert before[0]["text"] == before[1]["text"] and after[0]["text"] == after[1]["text"]
    assert after[0]["data"]["generated_at"] > before[0]["data"]["generated_at"]
    assert "stale" not in after[0]["data"]


async def test_the_hub_refreshes_a_subscribed_section_that_turns_stale(make_stream_client, clock):
    client, service = await make_stream_client()
    async with client.ws_connect("/api/v1/stream?sections=feature_adoption&time_range=7d") as watching:
        before = await receive(watching)
        clock.advance(service.config.cache.ttl_seconds + 1)
        # No request asks for the section: a second subscriber (to another section) only wakes the hub,
        # which finds the first section stale and refreshes it itself.
        async with client.ws_connect("/api/v1/stream?sections=feedback"):
            after = await receive(watching)
    assert after["section"] == "feature_adoption" and after["data"]["generated_at"] > before["data"]["generated_at"]


async def test_a_failing_section_is_sent_as_its_error_and_again_once_it_recovers(aiohttp_server, aiohttp_client,
                                                                                  fake_plausible, clock):
    plausible = Upstream(fake_plausible, aiohttp_server)
    await plausible.serve()
    service = AnalyticsService(service_config(plausible.url), clock=clock)
    client = await aiohttp_client(create_app(service))
    async with client.ws_connect("/api/v1/stream?sections=usage_trends") as ws:
        fresh = await receive(ws)
        plausible.switch.fault = "500"
        clock.advance(2 * service.config.cache.ttl_seconds + 1)  # past the hard limit: the snapshot goes
        async with client.ws_connect("/api/v1/stream?sections=feature_adoption"):  # wakes the hub
            failed = await receive(ws)
        endpoint = await client.get("/api/v1/usage-trends")
        assert endpoint.status == 503 and failed["data"] == await endpoint.json()
        plausible.switch.fault = None
        clock.advance(service.memo.failure_backoff + 1)  # the hub asks again once the back-off is over
        async with client.ws_connect("/api/v1/stream?sections=feature_adoption"):
            recovered = await receive(ws)
    assert "active_users" in fresh["data"] and "active_users" in recovered["data"]
    assert recovered["data"]["generated_at"] > fresh["data"]["generated_at"]


async def test_pings_keep_coming(make_stream_client):
    client, _ = await make_stream_client(ping_seconds=0.05)
    async with client.ws_connect("/api/v1/stream?sections=usage_trends") as ws:
        texts = [(await ws.receive(timeout=RECEIVE_SECONDS)).data for _ in range(4)]
    assert texts.count('{"type":"ping"}') >= 2  # the section once, then pings


@pytest.mark.parametrize(("query", "code", "names"), [
    ("sections=usage_trends,nope", "invalid_sections", ["usage_trends", "funnels", "feedback"]),
    ("time_range=2y", "invalid_time_range", ["7d", "90d"]),
    ("sections=usage_trends&colour=blue", "unknown_parameter", ["sections", "time_range"]),
])
async def test_bad_input_is_a_400_before_any_upgrade_naming_the_valid_values(make_stream_client, query, code, names):
    client, _ = await make_stream_client()
    response = await client.get(f"/api/v1/stream?{query}", headers=UPGRADE)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code and all(name in error["message"] for name in names), error


async def test_a_request_that_is_no_websocket_handshake_is_a_426(make_stream_client):
    client, _ = await make_stream_client()
    response = await client.get("/api/v1/stream")
    assert response.status == 426 and response.headers["Upgrade"] == "websocket"
    assert (await response.json())["error"]["code"] == "upgrade_required"


async def test_the_api_token_is_checked_in_the_handshake(make_stream_client):
    client, _ = await make_stream_client(**{"server.api_token": API_TOKEN})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/v1/stream?sections=usage_trends")
    assert refused.value.status == 401
    async with client.ws_connect("/api/v1/stream?sections=usage_trends",
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}) as ws:
        assert (await receive(ws))["section"] == "usage_trends"


async def test_beyond_max_stream_clients_the_handshake_is_a_503_until_one_leaves(make_stream_client):
    client, _ = await make_stream_client(**{"server.max_stream_clients": 2})
    path = "/api/v1/stream?sections=usage_trends"
    first, second = await client.ws_connect(path), await client.ws_connect(path)
    response = await client.get(path, headers=UPGRADE)
    assert response.status == 503 and "Retry-After" in response.headers
    error = (await response.json())["error"]
    assert error["code"] == "too_many_streams" and "server.max_stream_clients" in error["message"]
    await first.close()
    await second.close()
    async with client.ws_connect(path) as third:
        assert (await receive(third))["section"] == "usage_trends"


async def test_a_client_that_stops_reading_is_dropped_while_the_others_keep_receiving(make_stream_client):
    client, service = await make_stream_client()
    hub = client.app[STREAMS]
    path = "/api/v1/stream?sections=usage_trends&time_range=30d"
    reading = await client.ws_connect(path)
    first = await receive(reading)
    stalled = await stalled_stream(client.make_url(path))
    area = service.areas["usage_trends"]
    params = with_defaults(area.query, {"time_range": TimeRange.D30})
    changes = 0
    while len(hub.clients) == 2 and changes < 5000:
        # A new snapshot each time (the same numbers in a new object): a message to both streams.
        body = dataclasses.replace(area.peek(params).body)
        await service.memo.refresh(area.key(params), lambda body=body: asyncio.sleep(0, body))
        changes += 1
        assert (await receive(reading))["text"] == first["text"]  # the reader keeps up, and gets every one
    assert len(hub.clients) == 1, "the stalled client was never dropped"
    # The reader goes on receiving after the drop.
    await service.memo.refresh(area.key(params), lambda: asyncio.sleep(0, dataclasses.replace(area.peek(params).body)))
    assert (await receive(reading))["section"] == "usage_trends"
    await reading.close()
    # What the stalled client had not read is thrown away with its connection: it reads to the end.
    reader, writer = stalled
    await asyncio.wait_for(reader.read(), RECEIVE_SECONDS)
    assert reader.at_eof()
    writer.close()


async def stalled_stream(url) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake on a socket with a small receive buffer, after which nothing is read
    (the stream reader stops taking bytes from the socket once it holds two kilobytes)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    headers = "".join(f"{name}: {value}\r\n" for name, value in UPGRADE.items())
    writer.write(f"GET {url.path_qs} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n{headers}\r\n".encode())
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_at_shutdown_every_stream_is_closed_with_1001(make_stream_client):
    client, _ = await make_stream_client()
    async with client.ws_connect("/api/v1/stream?sections=usage_trends") as ws:
        await receive(ws)
        stopping = asyncio.create_task(client.server.close())
        message = await ws.receive(timeout=RECEIVE_SECONDS)
        await stopping
    assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, 1001, "the server is shutting down")


async def test_a_client_that_closed_its_stream_has_ended_for_the_shutdown(make_stream_client):
    client, _ = await make_stream_client()
    hub = client.app[STREAMS]
    async with client.ws_connect("/api/v1/stream?sections=usage_trends") as ws:
        await receive(ws)
        (served,) = hub.clients
    # The test server cancels a handler whose connection is lost, as it is once the server has answered
    # the close: the stream leaves the hub, and has ended whatever way its handler did (close_all waits
    # on that at shutdown, its whole timeout for a stream that never says it has).
    await asyncio.wait_for(gone(hub), RECEIVE_SECONDS)
    assert served.ended.is_set()


async def gone(hub: StreamHub) -> None:
    while hub.clients:
        await asyncio.sleep(0.01)


class QuietSocket:
    """A WebSocket whose peer never writes: what the client sends is kept, closing ends the reading."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = asyncio.Event()

    async def send_frame(self, message: bytes, kind: WSMsgType) -> None:
        self.sent.append(message)

    async def close(self, *, code: int, message: bytes, drain: bool) -> bool:
        self.closed.set()
        return True

    def __aiter__(self) -> QuietSocket:
        return self

    async def __anext__(self) -> None:
        await self.closed.wait()
        raise StopAsyncIteration


async def test_a_stream_stopped_as_a_message_arrives_ends():
    client = Client(QuietSocket(), queue_messages=4, ping_seconds=60.0)
    serving = asyncio.create_task(client.serve(None))
    await asyncio.sleep(0.01)  # the writer waits for a message
    client.offer(b"{}")
    client.stop(1001, "the server is shutting down")  # in the same turn of the loop: the stop must win
    await asyncio.wait_for(client.ended.wait(), RECEIVE_SECONDS)
    await serving
