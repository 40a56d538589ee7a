"""The query parameters a section accepts: names, valid values, defaults.

Each area declares its own (``Area.query``); the API parses requests with them, the dashboard
asks every section with their defaults, and the OpenAPI document describes them, so the three
cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..timeranges import TimeRange


@dataclass(frozen=True)
class Param:
    """One query parameter.

    ``choices`` lists the valid values; without them the value is free text that ``convert``
    checks (raising ``ValueError`` with the message the caller gets). A ``repeatable``
    parameter may be given several times and is parsed into a tuple.
    ``schema`` adds to the parameter's OpenAPI schema (a pattern, an integer range). Parameters
    not given (and without a default) are absent from the parsed parameters, so that one question
    has one parameter set (and one memoized snapshot) however it was asked.
    """

    choices: Sequence[str] | None
    default: str | None  # None: optional, absent from the parsed parameters when not given
    convert: Callable[[str], Any] = str
    repeatable: bool = False
    description: str = ""
    schema: dict[str, Any] = field(default_factory=dict)


TIME_RANGE_DESCRIPTION = ("the window: sub-day ranges are rolling and bucketed by hour; day ranges are the N calendar "
                          "days ending today (site timezone), bucketed by day")


class InvalidParameter(ValueError):
    """Parameters that are valid one by one but not together; ``name`` is the one to change."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


MAX_TEXT = 200  # characters of a free-text value (an event name): longer is a mistake, not a name


def text(value: str) -> str:
    """A free-text value, as given; refused when empty or too long to be a name."""
    if not value or len(value) > MAX_TEXT:
        raise ValueError(f"give 1 to {MAX_TEXT} characters (got {len(value)})")
    return value


def time_range(default: str, description: str = TIME_RANGE_DESCRIPTION) -> Param:
    return Param(TimeRange.names(), default, TimeRange, description=description)


def with_defaults(query: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """The parameters a section is asked for when only ``given`` are set: every other one at its
    default (parsed as a request would be)."""
    params = {name: param.convert(param.default) for name, param in query.items()
              if param.default is not None and not param.repeatable}
    return params | {name: value for name, value in given.items() if name in query}
