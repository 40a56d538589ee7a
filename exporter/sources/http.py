"""The HTTP client every upstream source is built on (docs/upstreams.md#http-client-behaviour).

One ``aiohttp.ClientSession`` per upstream for the life of the process; a semaphore bounds the
requests in flight; each attempt has its own timeout and the whole call a deadline; retries (GET
and other idempotent reads only) on connection errors, timeouts, 429 and 5xx with jittered
exponential back-off, never past the deadline. Bodies are read up to a size limit. A 5xx body is
never assumed to be JSON. Every attempt is counted per outcome. Secrets never appear in errors.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import aiohttp

from ..errors import SourceError
from ..health import HealthRegistry
from ..secrets import MASK, Secret

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Counts the HTTP attempts made by one refresh (see ``counting_requests``); the request budget of a
# refresh cycle is the sum of these over the cached queries.
_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("attempts", default=None)


async def counting_requests(load):
    """Run ``load()`` and return ``(result, number of HTTP attempts it made)``.

    Each memo load runs in its own task, so nested loads count into their own tally.
    """
    tally = [0]
    _attempts.set(tally)
    result = await load()
    return result, tally[0]


class RateLimited(SourceError):
    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, message, code="rate_limited")


@dataclass(frozen=True)
class HttpFailure:
    """A non-2xx answer, kept for the source's own error wording."""

    status: int
    detail: str | None  # the upstream's JSON ``error``/``detail`` text, if it sent JSON
    text: str = ""  # the start of the body as text, for upstreams that answer errors in plain text


@dataclass(frozen=True)
class ResponseFormat:
    """How a 2xx body becomes the call's result; ``decode`` raises ValueError on a malformed body."""

    name: str
    decode: Callable[[bytes], Any]


JSON = ResponseFormat("JSON", json.loads)
ERROR_TEXT_BYTES = 2048  # of a non-2xx body kept for HttpFailure.text


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    timeout_seconds: float  # one attempt
    deadline_seconds: float  # the whole call, retries included
    max_concurrency: int
    max_retries: int
    max_response_bytes: int

    @classmethod
    def from_config(cls, config: Any) -> "ClientSettings":
        """Settings from a source's configuration section (``HttpSourceConfig``)."""
        # The call's deadline leaves room for retries with back-off after a slow first attempt.
        return cls(config.url or "", config.timeout_seconds, config.timeout_seconds * 2.5,
                   config.max_concurrency, config.max_retries, config.max_response_bytes)


class UpstreamClient:
    """Base class for one upstream. Subclasses add typed calls and their own error wording."""

    # Statuses worth another attempt within the same call; an upstream may know better.
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES

    def __init__(self, name: str, settings: ClientSettings, health: HealthRegistry, *,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[Secret | None] = (),
                 bearer: Secret | None = None) -> None:
        self.name = name
        self.settings = settings
        self.health = health
        self._headers = dict(headers or {})
        if bearer:
            self._headers["Authorization"] = f"Bearer {bearer.reveal()}"
        self._secrets = [s.reveal() for s in [*secrets, bearer] if s]
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def close(self) -> None:
        """Close the session for good: a call still running afterwards fails instead of opening another."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise self.error("the service is shutting down", code="shutting_down")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.settings.max_concurrency, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                base_url=self.settings.base_url.rstrip("/") + "/", connector=connector,
                headers=self._headers, raise_for_status=False)
        return self._session

    async def request_json(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                           json_body: Any = None, retry: bool = True) -> Any:
        """One logical call answered with JSON (see :meth:`request`)."""
        return await self.request(method, path, params=params, json_body=json_body, retry=retry)

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json_body: Any = None, data: bytes | None = None, retry: bool = True,
                      response_format: ResponseFormat = JSON) -> Any:
        """One logical call: attempts with retries until success, a final error, or the deadline.

        The body is ``json_body`` as JSON or the raw ``data``; a 2xx answer is decoded as
        ``response_format`` says.
        """
        deadline = time.monotonic() + self.settings.deadline_seconds
        attempts = 1 + (self.settings.max_retries if retry else 0)
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return await self._attempt(method, path.lstrip("/"), params, json_body, data, response_format,
                                           min(self.settings.timeout_seconds, remaining))
            except _Retryable as retryable:
                last_error = retryable.error
                backoff = random.uniform(0, min(4.0, 0.25 * 2**attempt))
                if attempt + 1 >= attempts or time.monotonic() + backoff >= deadline:
                    break
                await asyncio.sleep(backoff)
        raise last_error if "last_error" in locals() else self.error("deadline passed before any attempt")

    async def _attempt(self, method: str, path: str, params: Mapping[str, str] | None, json_body: Any,
                       data: bytes | None, response_format: ResponseFormat, timeout: float) -> Any:
        session = self._client_session()
        tally = _attempts.get()
        if tally is not None:
            tally[0] += 1
        outcome = "success"
        try:
            async with self._semaphore:
                async with session.request(method, path, params=params, json=json_body, data=data,
                                           timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    body = await self._read_limited(response)
                    status, content_type = response.status, response.content_type
        except asyncio.TimeoutError:
            outcome = "timeout"
            raise _Retryable(self.error(f"no answer within {timeout:.1f} s", code="timeout")) from None
        except aiohttp.ClientConnectorError as error:
            outcome = "connection_error"
            raise _Retryable(self.error(f"cannot connect ({_reason(error)})", code="connection_error")) from None
        except aiohttp.ClientError as error:
            outcome = "connection_error"
            failed = self.error(f"connection failed ({type(error).__name__})", code="connection_error")
            raise _Retryable(failed) from None
        except SourceError:
            outcome = "invalid_response"
            raise
        finally:
            if outcome != "success":
                self.health.record_request(self.name, outcome)
        log.debug("%s %s %s -> %s (%d bytes)", self.name, method, path, status, len(body))
        if 200 <= status < 300:
            try:
                result = response_format.decode(body)
            except ValueError:
                self.health.record_request(self.name, "invalid_response")
                raise self.error(f"the response is not valid {response_format.name}", code="invalid_response") from None
            self.health.record_request(self.name, "success")
            return result
        failure = HttpFailure(status, _json_detail(body, content_type),
                              body[:ERROR_TEXT_BYTES].decode("utf-8", errors="replace"))
        self.health.record_request(self.name, _status_outcome(status))
        error = self.error(self.describe_failure(failure), code=_status_code(status))
        if status in self.retryable_statuses:
            raise _Retryable(error)
        raise error

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise self.error(f"response of {response.content_length} bytes exceeds the {limit}-byte limit",
                             code="invalid_response")
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise self.error(f"response exceeds the {limit}-byte limit", code="invalid_response")
            chunks.append(chunk)
        return b"".join(chunks)

    def describe_failure(self, failure: HttpFailure) -> str:
        """Wording for a non-2xx answer; sources override this with what the status means there."""
        if failure.status >= 500:
            return f"upstream error HTTP {failure.status}"
        detail = f": {failure.detail}" if failure.detail else ""
        return f"HTTP {failure.status}{detail}"

    def error(self, message: str, *, code: str = "upstream_error") -> SourceError:
        """A SourceError whose message is scrubbed of every secret this client holds."""
        for secret in self._secrets:
            message = message.replace(secret, MASK)
        return SourceError(self.name, message, code=code)


class _Retryable(Exception):
    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


def _status_outcome(status: int) -> str:
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


def _status_code(status: int) -> str:
    """The error code a status maps to (the envelope's ``code`` and the auto-detection key)."""
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 408: "timeout", 429: "rate_limited"}.get(
        status, "upstream_unavailable" if status >= 500 else "bad_request")


def _json_detail(body: bytes, content_type: str) -> str | None:
    """The upstream's own message from a JSON error body; ``None`` for HTML or garbage."""
    if "json" not in content_type:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    detail = data.get("error") or data.get("detail") if isinstance(data, dict) else None
    return detail[:200] if isinstance(detail, str) else None


def _reason(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    return error.os_error.strerror or type(error.os_error).__name__
