"""Scheduled reports end to end, against a real SMTP server on loopback (aiosmtpd) and the demo's
simulated upstreams: ``analytics-dashboard report NAME [--send]``, ``POST /api/v1/reports/{name}/send``
(answered at once, sent in the background, never holding up serving), the schedule firing at a
fake clock's times, and ``analytics_report_last_success_timestamp_seconds{report}``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.reports import REPORTS
from api.schedule import SCHEDULER, ReportScheduler
from exporter.cli import demo_overrides, main
from exporter.config import ENVIRONMENT, load_config
from exporter.service import AnalyticsService
from tests.conftest import FakeClock
from tests.mail_server import PASSWORD, USER, Mailbox, MailServers, self_signed_certificate

SENDER = "Analytics <analytics@example.com>"
RECIPIENTS = ["team@example.com", "lead@example.com"]
WEEKLY = {"name": "weekly", "schedule": "weekly MON 08:00", "recipients": RECIPIENTS, "formats": ["pdf", "xlsx", "csv"]}
METRIC = "analytics_report_last_success_timestamp_seconds"
ARRIVAL_SECONDS = 60.0  # generous: composing renders a PDF on a busy machine


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mail_servers(certificate) -> Iterator[MailServers]:
    servers = MailServers(certificate)
    yield servers
    servers.stop()


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def smtp_settings(port: int, **settings) -> dict:
    return {"host": "127.0.0.1", "port": port, "starttls": False, "sender": SENDER, "timeout_seconds": 10,
            "max_attempts": 1} | settings


def parsed(content: bytes) -> EmailMessage:
    return message_from_bytes(content, policy=default_policy)


def summary_text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


async def arrival(mailbox: Mailbox, count: int = 1) -> None:
    """Wait (without blocking the loop) until ``mailbox`` holds ``count`` messages."""
    for _ in range(int(ARRIVAL_SECONDS / 0.05)):
        if len(mailbox.received) >= count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{count} message(s) did not arrive within {ARRIVAL_SECONDS} s")


def metric_samples(text: str) -> dict[str, float]:
    return {sample.labels["report"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == METRIC}


async def recorded(client, expected: dict[str, float]) -> None:
    """Wait until the metric says ``expected`` (the sender records a send once the server's answer is read)."""
    for _ in range(int(ARRIVAL_SECONDS / 0.05)):
        samples = metric_samples(await (await client.get("/metrics")).text())
        if samples == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{METRIC} is {samples}, not {expected}")


# -- the command ---------------------------------------------------------------------------------


def write_config(tmp_path, **smtp) -> str:
    path = tmp_path / "analytics.yaml"
    path.write_text(yaml.safe_dump({"reports": [WEEKLY], "smtp": smtp}))
    return str(path)


@pytest.mark.slow  # a whole report through the command; the next test sends one
def test_the_command_writes_the_report_as_an_email_to_stdout(clean_environment, mail_servers, tmp_path,
                                                             capsysbinary):
    mailbox = Mailbox()
    config = write_config(tmp_path, **smtp_settings(mail_servers.start(mailbox)))
    assert main(["report", "weekly", "--demo", "--config", config]) == 0
    message = parsed(capsysbinary.readouterr().out)
    assert message["Subject"].startswith("Analytics report weekly: 7d to ")
    assert (message["From"], message["To"]) == (SENDER, ", ".join(RECIPIENTS))
    text = summary_text(message)
    assert "Headline numbers" in text and "(no previous period to compare with)" in text and "Experiments" in text
    assert "<table" in message.get_body(("html",)).get_content()
    names = [part.get_filename() for part in message.iter_attachments()]
    assert [name.rsplit(".", 1)[1] for name in names] == ["pdf", "xlsx", "csv"]
    assert all(name.startswith("analytics-dashboard-7d-") for name in names)
    assert mailbox.received == []  # written, not sent


@pytest.mark.slow  # renders a whole report from the demo
def test_the_command_sends_over_starttls_with_the_password_from_a_file(clean_environment, mail_servers, certificate,
                                                                      tmp_path, capsys):
    mailbox = Mailbox()
    secret = tmp_path / "smtp_password"
    secret.write_text(PASSWORD + "\n")
    config = write_config(tmp_path, **smtp_settings(mail_servers.start(mailbox, tls=True), starttls=True, user=USER,
                                                    password_file=str(secret)))
    clean_environment.setenv("SSL_CERT_FILE", certificate[0])  # the private authority the server's certificate is from
    assert main(["report", "weekly", "--send", "--demo", "--config", config]) == 0
    out, err = capsys.readouterr()
    ((sender, recipients, content, over_tls),) = mailbox.received
    assert (sender, recipients, over_tls) == ("analytics@example.com", RECIPIENTS, True)
    assert mailbox.logins == [(USER.encode(), PASSWORD.encode())]
    assert parsed(content)["Subject"].startswith("Analytics report weekly: ")
    assert out == "" and PASSWORD not in err


@pytest.mark.slow  # a whole report rendered before the login is refused
def test_a_refused_login_is_a_configuration_error_without_the_password(clean_environment, mail_servers, certificate,
                                                                      tmp_path, capsys):
    mailbox = Mailbox()
    config = write_config(tmp_path, **smtp_settings(mail_servers.start(mailbox, tls=True), starttls=True, user=USER))
    wrong = "not-the-password-0123"
    clean_environment.setenv("SMTP_PASSWORD", wrong)
    clean_environment.setenv("SSL_CERT_FILE", certificate[0])
    assert main(["report", "weekly", "--send", "--demo", "--config", config]) == 1
    out, err = capsys.readouterr()
    assert "configuration error: SMTP server 127.0.0.1:" in err and f"refused the login of user '{USER}'" in err
    assert wrong not in out + err and mailbox.received == []


def test_an_unknown_report_exits_2_naming_the_configured_ones(clean_environment, tmp_path, capsys):
    config = write_config(tmp_path, **smtp_settings(25))
    assert main(["report", "monthly", "--config", config]) == 2
    assert capsys.readouterr().err.strip() == "no report named 'monthly'; configured reports: weekly"


# -- the endpoint --------------------------------------------------------------------------------


def report_overrides(port: int, **smtp) -> dict:
    return {"reports": [WEEKLY]} | {f"smtp.{key}": value for key, value in smtp_settings(port, **smtp).items()}


@pytest.mark.slow  # renders a whole report from the demo
async def test_a_send_asked_for_is_answered_at_once_and_recorded_in_the_metric(make_demo_client, mail_servers,
                                                                              clock):
    mailbox = Mailbox()
    client, _ = await make_demo_client(**report_overrides(mail_servers.start(mailbox)))
    assert metric_samples(await (await client.get("/metrics")).text()) == {}
    response = await client.post("/api/v1/reports/weekly/send")
    assert response.status == 202 and await response.json() == {"report": "weekly", "status": "sending"}
    await arrival(mailbox)
    ((_, recipients, content, _),) = mailbox.received
    assert recipients == RECIPIENTS and "(no previous period to compare with)" in summary_text(parsed(content))
    await recorded(client, {"weekly": clock()})


async def test_an_unknown_report_is_a_404_naming_the_configured_ones(make_demo_client, mail_servers):
    client, _ = await make_demo_client(**report_overrides(mail_servers.start(Mailbox())))
    response = await client.post("/api/v1/reports/monthly/send")
    assert response.status == 404
    assert (await response.json())["error"] == {"code": "unknown_report",
                                                "message": "no report named 'monthly'; configured reports: weekly"}


@pytest.mark.slow  # renders a whole report from the demo
async def test_serving_goes_on_while_the_mail_server_holds_the_send(make_demo_client, mail_servers):
    arrived, release = threading.Event(), threading.Event()

    class Holding(Mailbox):
        async def handle_DATA(self, server, session, envelope) -> str:
            arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait, ARRIVAL_SECONDS)
            return await super().handle_DATA(server, session, envelope)

    mailbox = Holding()
    client, _ = await make_demo_client(**report_overrides(mail_servers.start(mailbox)))
    assert (await client.post("/api/v1/reports/weekly/send")).status == 202
    while not arrived.is_set():
        await asyncio.sleep(0.05)
    # The mail server has the message and has not answered: the service answers meanwhile.
    assert (await client.get("/api/v1/usage-trends")).status == 200
    assert (await client.post("/api/v1/reports/weekly/send")).status == 202  # joins the send under way
    release.set()
    await arrival(mailbox)
    await asyncio.sleep(0.2)
    assert len(mailbox.received) == 1


@pytest.mark.slow  # polls the log in real time for the background send
async def test_a_refused_login_in_the_background_is_logged_as_a_configuration_error(make_demo_client, mail_servers,
                                                                                   certificate, monkeypatch, caplog):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    wrong = "not-the-password-0123"
    mailbox = Mailbox()
    client, _ = await make_demo_client(**report_overrides(mail_servers.start(mailbox, tls=True), starttls=True,
                                                          user=USER, password=wrong))
    caplog.set_level(logging.INFO)
    assert (await client.post("/api/v1/reports/weekly/send")).status == 202
    for _ in range(int(ARRIVAL_SECONDS / 0.05)):
        if "was not sent" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "report weekly was not sent: configuration error: " in caplog.text and "refused the login" in caplog.text
    assert wrong not in caplog.text and mailbox.received == []
    assert metric_samples(await (await client.get("/metrics")).text()) == {}


# -- the schedule --------------------------------------------------------------------------------


class VirtualTime:
    """Stands for the scheduler's sleep: moves the fake clock instead of waiting, up to ``until``,
    where it stops for good (the test ends first)."""

    def __init__(self, clock: FakeClock, until: float) -> None:
        self.clock, self.until = clock, until

    async def sleep(self, seconds: float) -> None:
        if self.clock.now + seconds > self.until:
            await asyncio.Event().wait()
        self.clock.advance(seconds)
        await asyncio.sleep(0)


@pytest.mark.slow  # renders a whole report from the demo
async def test_the_schedule_sends_at_its_times_in_utc_and_compares_with_the_previous_run(aiohttp_client,
                                                                                         demo_upstreams,
                                                                                         mail_servers):
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    first = start + timedelta(hours=3, minutes=17)
    second = first + timedelta(days=1)
    clock = FakeClock(start.timestamp())
    mailbox = Mailbox()
    daily = {"name": "daily", "schedule": f"daily {first:%H:%M}", "recipients": RECIPIENTS, "formats": ["csv"]}
    overrides = report_overrides(mail_servers.start(mailbox)) | {"reports": [daily]}
    service = AnalyticsService(load_config(environ={}, overrides=demo_overrides(demo_upstreams) | overrides),
                               clock=clock)
    app = create_app(service)
    app[SCHEDULER] = ReportScheduler(app[REPORTS], clock, sleep=VirtualTime(clock, second.timestamp()).sleep)
    client = await aiohttp_client(app)
    await arrival(mailbox, 2)
    messages = [parsed(content) for _, _, content, _ in mailbox.received]
    assert [message["Date"] for message in messages] == [first.strftime("%a, %d %b %Y %H:%M:%S +0000"),
                                                          second.strftime("%a, %d %b %Y %H:%M:%S +0000")]
    assert all(message["Subject"].startswith("Analytics report daily: 24h to ") for message in messages)
    assert "(no previous period to compare with)" in summary_text(messages[0])
    assert "(was " in summary_text(messages[1]) or ", was " in summary_text(messages[1])
    assert "Previous" in messages[1].get_body(("html",)).get_content()
    assert app[SCHEDULER].next_runs == {"daily": second + timedelta(days=1)}
    await recorded(client, {"daily": second.timestamp()})
