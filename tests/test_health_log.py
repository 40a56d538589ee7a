"""The service log tells each source's state: once at start-up, then on every change (issue 12, item 9)."""

from __future__ import annotations

import logging

import pytest

from exporter.errors import SourceError
from exporter.health import HealthRegistry
from exporter.service import AnalyticsService
from tests.conftest import service_config


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "exporter.health"]


async def succeed() -> str:
    return "data"


async def fail(reason: str) -> None:
    raise SourceError("plausible", reason)


async def outcome(registry: HealthRegistry, load) -> None:
    try:
        await registry.track("plausible", load)
    except SourceError:
        pass


def test_disabled_sources_are_logged_at_start_up_with_the_setting_to_give(caplog):
    caplog.set_level(logging.INFO)
    service = AnalyticsService(service_config("http://127.0.0.1:9", **{"sources.experimentation.enabled": False}))
    assert messages(caplog) == []  # serve logs them once it listens (a port it cannot take is one line alone)
    service.health.log_disabled()
    assert messages(caplog) == [
        "source experimentation is disabled: disabled in configuration (sources.experimentation.enabled: false)",
        "source feedback is disabled: not configured: set sources.feedback.url (FEEDBACK_URL), "
        "sources.feedback.admin_token (FEEDBACK_ADMIN_TOKEN)",
        "source events is disabled: not configured: set events.path (EVENTS_PATH)",
    ]  # plausible is enabled: its first outcome will tell


async def test_first_outcome_then_only_changes_are_logged(caplog):
    caplog.set_level(logging.INFO)
    registry = HealthRegistry()
    registry.register("plausible")
    for load in (lambda: fail("upstream error HTTP 502"), lambda: fail("upstream error HTTP 502"), succeed, succeed,
                 lambda: fail("timeout after 8 s"), lambda: fail("upstream error HTTP 502"), succeed):
        await outcome(registry, load)
    assert messages(caplog) == [
        "source plausible is down: plausible: upstream error HTTP 502",
        "source plausible is up",
        "source plausible is down: plausible: timeout after 8 s",
        "source plausible is down: plausible: upstream error HTTP 502",
        "source plausible is up",
    ]
    levels = {record.getMessage(): record.levelno for record in caplog.records}
    assert levels["source plausible is up"] == logging.INFO
    assert levels["source plausible is down: plausible: timeout after 8 s"] == logging.WARNING


@pytest.mark.parametrize("first, logged", [(succeed, "source plausible is up"),
                                           (lambda: fail("HTTP 401"), "source plausible is down: plausible: HTTP 401")])
async def test_the_first_outcome_is_logged_whatever_it_is(caplog, first, logged):
    caplog.set_level(logging.INFO)
    registry = HealthRegistry()
    registry.register("plausible")
    await outcome(registry, first)
    assert messages(caplog) == [logged]
