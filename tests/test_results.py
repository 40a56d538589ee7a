"""Typed results: the JSON, the schema and the units all come from one declaration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jsonschema
import numpy as np
import pytest

from exporter.results import (
    CHANGE,
    COUNT,
    FRACTION,
    USERS,
    declare,
    json_schema,
    key_fields,
    round_float,
    to_json,
    unit_paths,
)


@dataclass(frozen=True)
class Point:
    timestamp: str = declare("bucket start", key=True)
    value: float = declare("the series' value")


@dataclass(frozen=True)
class Row:
    name: str = declare("what the row is about", key=True)
    share: float | None = declare("share of the total", FRACTION)
    lift_ci: tuple[float, float] | None = declare("95% interval of the lift", CHANGE)


@dataclass(frozen=True)
class Report:
    total: int = declare("users counted", USERS)
    rows: tuple[Row, ...] = declare("largest first")
    series: tuple[Point, ...] = declare("users per day", USERS)
    by_kind: dict[str, int] = declare("events by kind", COUNT)
    label: Literal["up", "down"] = declare("direction")
    note: str | None = declare("only when approximated", omit_if_none=True)


REPORT = Report(total=3, rows=(Row("a", 0.1 + 0.2, (-0.5, 1.25)), Row("b", None, None)),
                series=(Point("2026-12-01T00:00:00Z", np.float64(2.0)),), by_kind={"x": 1},
                label="up")


def test_json_follows_the_declaration_order_and_leaves_out_an_optional_none():
    body = to_json(REPORT)
    assert list(body) == ["total", "rows", "series", "by_kind", "label"]
    assert body["rows"][0] == {"name": "a", "share": 0.3, "lift_ci": [-0.5, 1.25]}
    assert to_json(Report(**{**REPORT.__dict__, "note": "n"}))["note"] == "n"


def test_the_schema_accepts_the_json_and_nothing_else():
    schema = json_schema(Report)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(to_json(REPORT), schema)
    for bad in ({**to_json(REPORT), "extra": 1}, {**to_json(REPORT), "label": "sideways"},
                {**to_json(REPORT), "total": -1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    assert "note" not in schema["required"] and "total" in schema["required"]
    share = schema["properties"]["rows"]["items"]["properties"]["share"]
    assert share["type"] == ["number", "null"] and share["maximum"] == 1


def test_units_come_from_the_field_or_its_container():
    assert unit_paths(Report) == {("total",): USERS, ("rows", "share"): FRACTION,
                                  ("rows", "lift_ci", "low"): CHANGE, ("rows", "lift_ci", "high"): CHANGE,
                                  ("series", "value"): USERS, ("by_kind",): COUNT}
    assert key_fields(Row) == ("name",) and key_fields(Report) == ()


@pytest.mark.parametrize("number, stated", [(0.09999999999999998, 0.1), (1 / 3, 0.333333333333),
                                            (123456789.123456789, 123456789.123), (float("nan"), None)])
def test_floats_are_stated_to_twelve_significant_digits(number, stated):
    assert round_float(number) == stated


def test_an_undeclared_field_is_refused():
    @dataclass(frozen=True)
    class Loose:
        x: int

    with pytest.raises(TypeError, match="not declared"):
        to_json(Loose(1))


@dataclass(frozen=True)
class Group:
    value: str = declare("the group", key=True)
    users: int = declare("users in the group", USERS)
    report: Report = declare("the report of the group", flatten=True)


def test_a_flattened_field_writes_its_fields_into_the_holding_object():
    group = Group("payments", 3, REPORT)
    body = to_json(group)
    assert list(body)[:3] == ["value", "users", "total"] and "report" not in body
    jsonschema.validate(body, json_schema(Group))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "report": {}}, json_schema(Group))
    assert unit_paths(Group)[("users",)] == USERS and unit_paths(Group)[("rows", "share")] == FRACTION
