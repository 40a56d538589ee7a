"""Report schedules (``daily HH:MM``, ``weekly DAY HH:MM``, UTC) and the ``reports:`` / ``smtp:``
configuration as exporter.typed_mapping builds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config import ConfigError, load_config
from exporter.reports.config import ReportConfig, SmtpConfig, check_reports
from exporter.reports.schedule import ACCEPTED_FORMS, Schedule
from exporter.secrets import Secret
from exporter.timeranges import TimeRange
from exporter.typed_mapping import MappingError, build, convert, to_plain

MONDAY = datetime(2026, 12, 7, tzinfo=UTC)  # a Monday, midnight UTC


@pytest.mark.parametrize(("text", "expected"), [
    ("daily 07:30", Schedule(7, 30)), ("weekly MON 08:00", Schedule(8, 0, 0)),
    ("weekly sun 23:59", Schedule(23, 59, 6)), ("  daily   00:00 ", Schedule(0, 0)),
])
def test_the_two_forms_parse(text, expected):
    assert Schedule.parse(text) == expected
    assert Schedule.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "daily", "daily 7:30", "daily 24:00", "daily 07:60", "weekly 08:00",
                                  "weekly MONDAY 08:00", "weekly XYZ 08:00", "daily MON 08:00", "hourly 08:00",
                                  "0 8 * * 1", "weekly MON 08:00 UTC"])
def test_anything_else_is_an_error_naming_the_accepted_forms(text):
    with pytest.raises(ValueError) as raised:
        Schedule.parse(text)
    assert ACCEPTED_FORMS in str(raised.value) and repr(text) in str(raised.value)


@pytest.mark.parametrize(("schedule", "instant", "expected"), [
    ("daily 07:30", MONDAY, MONDAY + timedelta(hours=7, minutes=30)),
    ("daily 07:30", MONDAY + timedelta(hours=7, minutes=30), MONDAY + timedelta(days=1, hours=7, minutes=30)),
    ("weekly MON 08:00", MONDAY + timedelta(hours=8), MONDAY + timedelta(days=7, hours=8)),
    ("weekly MON 08:00", MONDAY + timedelta(hours=7, minutes=59, seconds=59), MONDAY + timedelta(hours=8)),
    ("weekly SUN 23:00", MONDAY + timedelta(days=6, hours=23, minutes=30), MONDAY + timedelta(days=13, hours=23)),
    # 08:00 in UTC+2 is 06:00 UTC: the run at 07:30 UTC is still ahead
    ("daily 07:30", datetime(2026, 12, 7, 8, 0, tzinfo=timezone(timedelta(hours=2))),
     MONDAY + timedelta(hours=7, minutes=30)),
])
def test_the_next_run_is_the_first_one_strictly_after_the_instant_in_utc(schedule, instant, expected):
    run = Schedule.parse(schedule).next_after(instant)
    assert run == expected and run.tzinfo is UTC


@given(hour=st.integers(0, 23), minute=st.integers(0, 59), weekday=st.none() | st.integers(0, 6),
       instant=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_next_run_matches_the_schedule_within_one_period(hour, minute, weekday, instant):
    schedule = Schedule(hour, minute, weekday)
    run = schedule.next_after(instant)
    assert instant < run <= instant + schedule.period
    assert (run.hour, run.minute, run.second, run.microsecond) == (hour, minute, 0, 0)
    assert weekday is None or run.weekday() == weekday


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule.parse("daily 07:30").next_after(datetime(2026, 12, 7))


# -- configuration ------------------------------------------------------------------------------

def reports(*items: dict) -> tuple[ReportConfig, ...]:
    return convert(tuple[ReportConfig, ...], list(items), "reports")


def test_reports_and_smtp_build_from_the_configuration_with_the_password_from_a_file(tmp_path):
    secret = tmp_path / "smtp_password"
    secret.write_text("s3cret-pass\n")
    (weekly, daily) = reports(
        {"name": "weekly", "schedule": "weekly MON 08:00",
         "recipients": ["team@example.com", "Lead <lead@example.com>"], "formats": ["pdf", "xlsx", "csv"]},
        {"name": "daily", "schedule": "daily 07:30", "recipients": "ops@example.com", "time_range": "30d"})
    smtp = build(SmtpConfig, {"host": "smtp.example.com", "port": "2525", "user": "analytics",
                              "password_file": str(secret), "sender": "Analytics <analytics@example.com>"})
    assert (weekly.range, weekly.formats, weekly.parsed_schedule) == (TimeRange.D7, ("pdf", "xlsx", "csv"),
                                                                      Schedule(8, 0, 0))
    assert (daily.range, daily.recipients, daily.formats) == (TimeRange.D30, ("ops@example.com",), ("pdf",))
    assert reports({"name": "d", "schedule": "daily 06:00", "recipients": ["a@example.com"]})[0].range is TimeRange.H24
    assert (smtp.port, smtp.starttls, smtp.password) == (2525, True, Secret("s3cret-pass"))
    assert "s3cret" not in repr(smtp) and to_plain(smtp)["password"] == "***"
    check_reports((weekly, daily), smtp)


@pytest.mark.parametrize(("item", "message"), [
    ({"name": "weekly", "schedule": "every monday", "recipients": ["a@example.com"]},
     "reports[0]: schedule: 'every monday' is not a schedule; accepted forms: "),
    ({"name": "w", "schedule": "daily 07:30", "recipients": []}, "reports[0]: recipients: a report needs"),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["a@example.com\r\nBcc: x@evil.example"]},
     "reports[0]: recipients[0]: "),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["nobody"]}, "recipients[0]: 'nobody' is not a mail"),
    ({"name": "../w", "schedule": "daily 07:30", "recipients": ["a@example.com"]}, "reports[0]: name: '../w'"),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["a@example.com"], "time_range": "1y"},
     "time_range: '1y' is not one of 1h, 6h, 24h, 7d, 30d, 90d"),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["a@example.com"], "formats": ["pdf", "docx"]},
     "reports[0].formats[1]: 'docx' is not one of pdf, xlsx, csv"),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["a@example.com"], "formats": ["pdf", "pdf"]},
     "formats: pdf is listed more than once"),
    ({"name": "w", "schedule": "daily 07:30", "recipients": ["a@example.com"], "cron": "* * *"},
     "reports[0].cron: unknown key"),
])
def test_a_report_that_cannot_be_used_is_an_error_naming_the_key(item, message):
    with pytest.raises(MappingError) as raised:
        reports(item)
    assert message in str(raised.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"host": "smtp.example.com", "user": "analytics"}, "user and password (or password_file) go together"),
    ({"host": "smtp.example.com", "user": "a", "password": "p", "starttls": False}, "would cross the network in clear"),
    ({"host": "smtp.example.com", "port": 0}, "port must be 1..65535"),
    ({"host": "smtp.example.com", "sender": "analytics"}, "sender: 'analytics' is not a mail address"),
    ({"host": "smtp.example.com", "max_attempts": 0}, "max_attempts must be 1 or more"),
])
def test_smtp_settings_that_cannot_be_used_are_errors(settings, message):
    with pytest.raises(MappingError) as raised:
        build(SmtpConfig, settings, "smtp")
    assert str(raised.value).startswith("smtp: ") and message in str(raised.value)


def test_reports_need_unique_names_and_a_mail_server():
    (weekly,) = reports({"name": "weekly", "schedule": "weekly MON 08:00", "recipients": ["a@example.com"]})
    with pytest.raises(ValueError, match="the name 'weekly' is used more than once"):
        check_reports((weekly, weekly), SmtpConfig(host="smtp.example.com", sender="a@example.com"))
    with pytest.raises(ValueError, match="smtp.host is not set"):
        check_reports((weekly,), SmtpConfig(sender="a@example.com"))
    with pytest.raises(ValueError, match="smtp.sender is not set"):
        check_reports((weekly,), SmtpConfig(host="smtp.example.com"))
    check_reports((), SmtpConfig())  # no reports, no mail server needed


def test_the_smtp_password_comes_from_the_environment_or_its_file_and_is_printed_masked(tmp_path, capsys,
                                                                                       monkeypatch):
    path = tmp_path / "analytics.yaml"
    path.write_text("reports: [{name: weekly, schedule: weekly MON 08:00, recipients: [team@example.com]}]\n"
                    "smtp: {host: smtp.example.com, user: analytics, sender: analytics@example.com}\n")
    secret = tmp_path / "smtp_password"
    secret.write_text("from-the-file\n")
    assert load_config(str(path), environ={"SMTP_PASSWORD": "from-the-env"}).smtp.password == Secret("from-the-env")
    config = load_config(str(path), environ={"SMTP_PASSWORD_FILE": str(secret)})
    assert config.smtp.password == Secret("from-the-file") and config.reports[0].name == "weekly"
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(secret))
    assert main(["check-config", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "password: '***'" in printed and "from-the-file" not in printed


def test_a_schedule_that_does_not_parse_is_a_configuration_error_naming_the_key(tmp_path):
    path = tmp_path / "analytics.yaml"
    path.write_text("reports: [{name: weekly, schedule: mondays at 8, recipients: [team@example.com]}]\n"
                    "smtp: {host: smtp.example.com, sender: analytics@example.com}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), environ={})
    assert f"{path}: reports[0]: schedule: 'mondays at 8' is not a schedule; accepted forms: " in str(raised.value)
