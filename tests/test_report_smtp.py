"""Sending a report against a real SMTP server on loopback (aiosmtpd): plain, STARTTLS with a
self-signed certificate, a refused login, a server that fails once, one that refuses for good,
and no server at all."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from exporter.reports.config import SmtpConfig
from exporter.reports.smtp import Backoff, LoginRefused, SendFailed, send
from exporter.secrets import Secret
from tests.mail_server import PASSWORD, USER, Mailbox, MailServers, free_port, self_signed_certificate

SENDER = "analytics@example.com"
RECIPIENTS = ("team@example.com", "lead@example.com")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(certificate) -> Iterator:
    """``start(mailbox, tls=False)`` -> the port of a running aiosmtpd (STARTTLS offered with ``tls``)."""
    servers = MailServers(certificate)
    yield servers.start
    servers.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def no_sleep(waits):
    """Stands for asyncio.sleep between tries: records the back-off instead of waiting it out."""
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return sleep


def config(port: int, **settings) -> SmtpConfig:
    return SmtpConfig(**({"host": "127.0.0.1", "port": port, "starttls": False, "sender": SENDER,
                          "timeout_seconds": 10.0, "max_attempts": 3} | settings))


def message(subject: str = "Analytics report weekly") -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = subject, SENDER, ", ".join(RECIPIENTS)
    mail.set_content("Headline numbers\n")
    mail.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="report.pdf")
    return mail


async def test_a_plain_connection_delivers_to_every_recipient(smtp_server, no_sleep, waits):
    mailbox = Mailbox()
    port = smtp_server(mailbox)
    assert await send(message(), config(port), sleep=no_sleep) == 1
    ((sender, recipients, content, over_tls),) = mailbox.received
    assert (sender, recipients, over_tls) == (SENDER, list(RECIPIENTS), False)
    assert b"Subject: Analytics report weekly" in content and b'filename="report.pdf"' in content
    assert waits == []


async def test_starttls_with_a_trusted_self_signed_certificate_then_login(smtp_server, certificate, no_sleep):
    mailbox = Mailbox()
    port = smtp_server(mailbox, tls=True)
    trusted = ssl.create_default_context(cafile=certificate[0])
    settings = config(port, starttls=True, user=USER, password=Secret(PASSWORD))
    assert await send(message(), settings, ssl_context=trusted, sleep=no_sleep) == 1
    assert mailbox.logins == [(USER.encode(), PASSWORD.encode())]
    ((_, recipients, _, over_tls),) = mailbox.received
    assert recipients == list(RECIPIENTS) and over_tls


async def test_a_certificate_that_does_not_verify_fails_at_once(smtp_server, no_sleep, waits):
    mailbox = Mailbox()
    port = smtp_server(mailbox, tls=True)  # the system's authorities do not know the self-signed certificate
    with pytest.raises(SendFailed) as raised:
        await send(message(), config(port, starttls=True), sleep=no_sleep)
    assert (raised.value.permanent, raised.value.attempts, waits) == (True, 1, [])
    assert "certificate does not verify" in str(raised.value)
    assert mailbox.received == []


async def test_a_refused_login_is_a_configuration_error_never_retried_nor_revealing_the_password(
        smtp_server, certificate, no_sleep, waits, caplog):
    mailbox = Mailbox()
    port = smtp_server(mailbox, tls=True)
    trusted = ssl.create_default_context(cafile=certificate[0])
    wrong = "wrong-password-never-printed"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LoginRefused) as raised:
        await send(message(), config(port, starttls=True, user=USER, password=Secret(wrong)), ssl_context=trusted,
                   sleep=no_sleep)
    assert (raised.value.permanent, raised.value.attempts, waits) == (True, 1, [])
    assert f"refused the login of user '{USER}' (535 " in str(raised.value)
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN) within the one try
    assert set(mailbox.logins) == {(USER.encode(), wrong.encode())} and mailbox.received == []
    assert wrong not in str(raised.value) and wrong not in repr(raised.value) and wrong not in caplog.text


async def test_a_server_that_fails_once_then_accepts_gets_the_message_once(smtp_server, no_sleep, waits, caplog):
    mailbox = Mailbox("451 4.3.0 Try again later")
    port = smtp_server(mailbox)
    assert await send(message(), config(port), backoff=Backoff(first_seconds=30), sleep=no_sleep) == 2
    assert len(mailbox.received) == 1
    assert len(waits) == 1 and 0 <= waits[0] <= 30
    assert "451 4.3.0 Try again later" in caplog.text and "(try 1 of 3)" in caplog.text


async def test_a_permanent_refusal_is_not_retried(smtp_server, no_sleep, waits):
    mailbox = Mailbox("554 5.7.1 Message rejected")
    port = smtp_server(mailbox)
    with pytest.raises(SendFailed) as raised:
        await send(message(), config(port), sleep=no_sleep)
    assert (raised.value.permanent, raised.value.attempts, waits) == (True, 1, [])
    assert "answered 554 5.7.1 Message rejected" in str(raised.value)


async def test_no_server_is_a_transient_failure_retried_up_to_the_limit(no_sleep, waits):
    with pytest.raises(SendFailed) as raised:
        await send(message(), config(free_port(), max_attempts=3), sleep=no_sleep)
    assert (raised.value.permanent, raised.value.attempts, len(waits)) == (False, 3, 2)
    assert str(raised.value).endswith("after 3 tries")


async def test_the_event_loop_serves_while_a_send_waits_on_the_server(smtp_server, no_sleep):
    """The server holds DATA until this test's loop releases it: the send can only succeed if the
    loop kept running while the send waited."""
    arrived, release = threading.Event(), threading.Event()

    class Holding(Mailbox):
        async def handle_DATA(self, server, session, envelope) -> str:
            arrived.set()
            released = await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
            return "250 OK" if released else "554 5.3.0 not released: the client's event loop was blocked"

    port = smtp_server(Holding())
    sending = asyncio.create_task(send(message(), config(port, max_attempts=1), sleep=no_sleep))
    while not arrived.is_set():
        await asyncio.sleep(0.01)
    release.set()
    assert await sending == 1


def test_the_back_off_doubles_up_to_its_maximum_with_full_jitter():
    backoff = Backoff(first_seconds=30, maximum_seconds=600)
    assert [backoff.delay(attempt, lambda: 1.0) for attempt in range(1, 7)] == [30, 60, 120, 240, 480, 600]
    assert backoff.delay(3, lambda: 0.25) == 30
