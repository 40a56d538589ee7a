"""Send a report email over SMTP, retrying transient failures, without blocking the event loop.

The standard library's ``smtplib`` runs in a worker thread (``asyncio.to_thread``): a report is a
few messages a day, so a thread per send costs nothing, needs no dependency, and every blocking
operation is bounded by ``smtp.timeout_seconds`` (docs/reports.md compares it with aiosmtplib).

What is retried (up to ``smtp.max_attempts`` tries, a jittered exponential back-off apart): a
connection that fails or drops, a timeout, and the server's 4xx answers (greylisting, "try again
later"). What is not, because trying again cannot help: a refused login (:class:`LoginRefused`:
the configuration is wrong), a certificate that does not verify, a server that lacks STARTTLS or
AUTH, and 5xx answers. The password is revealed to ``smtplib.login`` only: it is never in a log
line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

from .config import SmtpConfig

log = logging.getLogger(__name__)


class SendFailed(Exception):
    """The message was not sent; ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool, attempts: int) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.attempts = attempts


class LoginRefused(SendFailed):
    """The server refused the configured user and password: a configuration error."""


@dataclass(frozen=True)
class Backoff:
    """Full jitter: the wait before try ``n + 1`` is uniform in ``[0, min(maximum, first * 2**(n - 1))]``."""

    first_seconds: float = 30.0
    maximum_seconds: float = 600.0

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        return uniform() * min(self.maximum_seconds, self.first_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class _Failure:
    description: str
    permanent: bool
    login: bool = False


async def send(message: EmailMessage, smtp: SmtpConfig, *, ssl_context: ssl.SSLContext | None = None,
               backoff: Backoff = Backoff(), sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> int:
    """Send ``message`` to its recipients; the number of tries it took. Raises :class:`SendFailed`
    (or :class:`LoginRefused`) when it could not be sent. ``ssl_context`` verifies the server's
    certificate for STARTTLS (default: the system's trusted authorities, which ``SSL_CERT_FILE``
    can point elsewhere)."""
    if smtp.missing_settings():
        raise SendFailed(f"smtp.{smtp.missing_settings()[0]} is not set", permanent=True, attempts=0)
    context = ssl_context or ssl.create_default_context()
    attempt = 0
    while True:
        attempt += 1
        try:
            refused = await asyncio.to_thread(_deliver, message, smtp, context)
        except (smtplib.SMTPException, OSError) as error:
            failure = _classify(error, smtp)
            where = f"SMTP server {smtp.host}:{smtp.port}"
            if failure.permanent or attempt == smtp.max_attempts:
                kind = LoginRefused if failure.login else SendFailed
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise kind(f"{where}: {failure.description}{tries}", permanent=failure.permanent,
                           attempts=attempt) from None
            wait = backoff.delay(attempt)
            log.warning("sending %r through %s failed (try %d of %d): %s; trying again in %.0f s",
                        message["Subject"], where, attempt, smtp.max_attempts, failure.description, wait)
            await sleep(wait)
        else:
            if refused:
                log.warning("the SMTP server refused some recipients of %r: %s", message["Subject"],
                            ", ".join(f"{address} ({code})" for address, (code, _) in refused.items()))
            return attempt


def _deliver(message: EmailMessage, smtp: SmtpConfig, context: ssl.SSLContext) -> dict[str, tuple[int, bytes]]:
    """One try, blocking: connect, STARTTLS, log in, send; the recipients the server refused."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as client:
        client.ehlo()
        if smtp.starttls:
            client.starttls(context=context)
            client.ehlo()
        if smtp.user and smtp.password:
            client.login(smtp.user, smtp.password.reveal())
        return client.send_message(message)


def _classify(error: Exception, smtp: SmtpConfig) -> _Failure:
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return _Failure(f"refused the login of user {smtp.user!r} ({_reply(error.smtp_code, error.smtp_error)}); "
                        "check smtp.user and smtp.password", permanent=True, login=True)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return _Failure(f"does not support what the configuration asks for: {error}", permanent=True)
    if isinstance(error, ssl.SSLCertVerificationError):
        return _Failure(f"its certificate does not verify: {error.verify_message}", permanent=True)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return _Failure(f"refused every recipient ({', '.join(map(str, sorted(set(codes))))})",
                        permanent=all(code >= 500 for code in codes))
    if isinstance(error, smtplib.SMTPResponseException):
        return _Failure(f"answered {_reply(error.smtp_code, error.smtp_error)}", permanent=error.smtp_code >= 500)
    if isinstance(error, TimeoutError):
        return _Failure(f"did not answer within {smtp.timeout_seconds:g} s", permanent=False)
    return _Failure(f"{type(error).__name__}: {error}", permanent=False)


def _reply(code: int, text: bytes | str) -> str:
    readable = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(readable.split())}"
