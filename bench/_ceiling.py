"""The HTTP ceiling: the least an aiohttp server can do to answer, run as its own process.

``python -m bench._ceiling PORT PATH=FILE:CONTENT_TYPE ...`` serves each file's bytes, read once
at start, at its path: no middleware, no parsing, no rendering. Started and served the same way
as the service (``AppRunner`` without an access log, one ``TCPSite``), it is the practical limit
for Python on this machine for a body of that size; the benchmarks serve our own responses'
bytes from it, so both sides send exactly the same amount.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web


def ceiling_app(bodies: dict[str, tuple[bytes, str]]) -> web.Application:
    """An app answering GET ``path`` with the pre-rendered ``(body, content type)``."""
    app = web.Application()
    for path, (body, content_type) in bodies.items():
        async def serve(_: web.Request, body: bytes = body, content_type: str = content_type) -> web.Response:
            response = web.Response(body=body)
            response.headers["Content-Type"] = content_type
            return response

        app.router.add_get(path, serve)
    return app


async def serve_forever(port: int, bodies: dict[str, tuple[bytes, str]]) -> None:
    runner = web.AppRunner(ceiling_app(bodies), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def parse_routes(arguments: list[str]) -> dict[str, tuple[bytes, str]]:
    """``PATH=FILE:CONTENT_TYPE`` arguments as ``{path: (file bytes, content type)}``."""
    routes = {}
    for argument in arguments:
        path, _, rest = argument.partition("=")
        file, _, content_type = rest.partition(":")
        routes[path] = (Path(file).read_bytes(), content_type)
    return routes


if __name__ == "__main__":
    try:
        asyncio.run(serve_forever(int(sys.argv[1]), parse_routes(sys.argv[2:])))
    except KeyboardInterrupt:
        pass
