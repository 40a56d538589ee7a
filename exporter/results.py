"""Typed results: every output field declared once, with its unit and its description.

An analysis returns frozen dataclasses whose fields are declared with :func:`declare`. Everything
a caller sees is derived from those declarations, so a new field is one line:

- the JSON body (:func:`to_json`: fields in declaration order; floats rounded to 12 significant
  digits so that ``0.1 + 0.2`` reads ``0.3``; a field declared ``omit_if_none`` is left out while
  it is None);
- the OpenAPI schema of the body (:func:`json_schema`: types from the annotations, bounds and
  descriptions from the declaration, ``additionalProperties: false``);
- the unit column of the CSV export and the units row of the spreadsheet (:func:`unit_paths`).

A field declared ``flatten`` holds a result whose fields are written into the object holding it
(a breakdown group is its value, its users and the section's own fields for that group).

Types understood: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` (an enum), ``X | None``
(nullable), ``tuple[X, ...]`` / ``list[X]`` (arrays), ``tuple[float, float]`` (an interval
``[low, high]``), ``dict[str, X]`` (an object keyed by data: ratings, variants, sources), a
nested result dataclass, and ``dict[str, Any]`` / ``Any`` for free-form values (definitions).

A unit on a container field (a series, a mapping, an interval) is the unit of the numbers in it
that declare none of their own: ``users_over_time: tuple[Point, ...] = declare(..., USERS)``
makes every point's ``value`` a number of users.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Literal, NewType, Union

SIGNIFICANT_DIGITS = 12


@dataclass(frozen=True)
class Unit:
    """What a number measures: its name in exports and the bounds of its values."""

    name: str  # the CSV export's ``unit`` column
    minimum: float | None = None
    maximum: float | None = None


FRACTION = Unit("ratio", 0, 1)  # a share of a whole, 0..1 (every *_rate)
CHANGE = Unit("ratio")  # a signed ratio: lifts, relative changes, differences of fractions
PROBABILITY = Unit("probability", 0, 1)
PERCENT = Unit("percent", 0, 100)  # only Plausible's bounce rate and the segments' shares
SECONDS = Unit("seconds", 0)
DAYS = Unit("days", 0)
USERS = Unit("users", 0)
USERS_PER_WEEK = Unit("users_per_week")
COUNT = Unit("count", 0)
STARS = Unit("stars", 1, 5)
SCORE = Unit("score")  # the scale is in the field's description
INDEX = Unit("index", 0)  # a position: a step number, a period
NUMBER = Unit("number")  # a plain quantity

_META = "result"

Timestamp = NewType("Timestamp", str)  # ISO 8601 in UTC with a Z suffix
TIMESTAMP_SCHEMA = {"type": "string", "format": "date-time",
                    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
STATUS_CODES = ("machine-readable codes: why a number is null or approximate, or what else qualifies the object "
                "(empty when nothing does)")


@dataclass(frozen=True)
class Declaration:
    description: str
    unit: Unit | None
    key: bool  # identifies its item in a list (CSV dimension, spreadsheet row label)
    omit_if_none: bool  # left out of the JSON while None (an optional field)
    flatten: bool  # a result whose fields are written into the object holding it


def declare(description: str, unit: Unit | None = None, *, key: bool = False, omit_if_none: bool = False,
            flatten: bool = False, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A result field: what it means, and for numbers (or containers of numbers) their unit."""
    if omit_if_none and default is MISSING and default_factory is MISSING:
        default = None
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_META: Declaration(description, unit, key, omit_if_none, flatten)})


def status_codes() -> Any:
    """The ``status_codes`` field every result object ends with."""
    return declare(STATUS_CODES, default=())


@dataclass(frozen=True)
class Point:
    """One bucket of a time series; the series' field declares the unit of ``value``."""

    timestamp: Timestamp = declare("start of the bucket", key=True)
    value: float | None = declare("the series' value in the bucket (null when undefined)")


def declaration(field: dataclasses.Field) -> Declaration:
    declared = field.metadata.get(_META)
    if declared is None:
        raise TypeError(f"result field {field.name!r} is not declared with exporter.results.declare")
    return declared


def result_fields(cls: type) -> list[tuple[str, Any, Declaration]]:
    """``(name, type, declaration)`` of every field of result class ``cls``, in order."""
    hints = typing.get_type_hints(cls)
    return [(field.name, hints[field.name], declaration(field)) for field in dataclasses.fields(cls)]


# -- JSON ------------------------------------------------------------------------------------

def to_json(value: Any) -> Any:
    """``value`` (a result, or plain data holding results) as plain JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            declared = declaration(field)
            if declared.omit_if_none and item is None:
                continue
            if declared.flatten:
                body |= to_json(item)
            else:
                body[field.name] = to_json(item)
        return body
    if isinstance(value, float):
        return round_float(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if hasattr(value, "item"):  # a numpy scalar
        return to_json(value.item())
    raise TypeError(f"cannot encode {type(value).__name__} in a result")


def round_float(number: float) -> float | None:
    """A float as the API states it: 12 significant digits (no float noise); None if not finite."""
    if not math.isfinite(number):
        return None
    return float(f"{number:.{SIGNIFICANT_DIGITS}g}")


# -- JSON Schema -----------------------------------------------------------------------------

Schema = dict[str, Any]


def json_schema(cls: type) -> Schema:
    """The JSON Schema (draft 2020-12) of ``to_json`` of an instance of result class ``cls``."""
    properties, required = {}, []
    for name, hint, declared in result_fields(cls):
        if declared.flatten:
            inner = json_schema(hint)
            properties |= inner["properties"]
            required += inner["required"]
            continue
        properties[name] = _schema_of(hint, declared.unit) | {"description": declared.description}
        if not declared.omit_if_none:
            required.append(name)
    schema: Schema = {"type": "object", "properties": properties, "required": required,
                      "additionalProperties": False}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def _schema_of(hint: Any, unit: Unit | None) -> Schema:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        inner = _schema_of(rest[0] if len(rest) == 1 else Union[tuple(rest)], unit)
        return {"anyOf": [inner, {"type": "null"}]} if "type" not in inner or "enum" in inner \
            else inner | {"type": _with_null(inner["type"])}
    if hint is Any:
        return {}
    if hint is Timestamp:
        return dict(TIMESTAMP_SCHEMA)
    if dataclasses.is_dataclass(hint):
        return json_schema(hint)
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is str:
        return {"type": "string"}
    if hint in (int, float):
        schema: Schema = {"type": "integer" if hint is int else "number"}
        if unit is not None and unit.minimum is not None:
            schema["minimum"] = unit.minimum
        if unit is not None and unit.maximum is not None:
            schema["maximum"] = unit.maximum
        return schema
    if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        item = _schema_of(args[0], unit)
        return {"type": "array", "items": item, "minItems": 2, "maxItems": 2}
    if origin in (tuple, list):
        return {"type": "array", "items": _schema_of(args[0], unit)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1], unit)}
    raise TypeError(f"no JSON Schema for result type {hint!r}")


def _with_null(kind: str | list[str]) -> list[str]:
    return [*(kind if isinstance(kind, list) else [kind]), "null"]


# -- units -----------------------------------------------------------------------------------

def unit_paths(cls: type) -> dict[tuple[str, ...], Unit]:
    """The unit of every number under result class ``cls``, by its path of field names.

    The path is the one the CSV export names its rows by: list items and mapping entries add
    nothing to it (they become the row's dimension), an interval adds ``low``/``high``.
    """
    units: dict[tuple[str, ...], Unit] = {}
    _collect_units(cls, (), None, units)
    return units


def _collect_units(hint: Any, path: tuple[str, ...], unit: Unit | None,
                   units: dict[tuple[str, ...], Unit]) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                _collect_units(arg, path, unit, units)
    elif dataclasses.is_dataclass(hint):
        for name, field_hint, declared in result_fields(hint):
            inner_path = path if declared.flatten else (*path, name)
            _collect_units(field_hint, inner_path, declared.unit or unit, units)
    elif origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        for bound in ("low", "high"):
            _collect_units(args[0], (*path, bound), unit, units)
    elif origin in (tuple, list):
        _collect_units(args[0], path, unit, units)
    elif origin is dict:
        _collect_units(args[1], path, unit, units)
    elif hint in (int, float) and unit is not None:
        units[path] = unit


def with_fields(result: Any, cls: type, **extra: Any) -> Any:
    """``result``'s fields as an instance of ``cls``, a result type extending its type, with ``extra``
    (new fields, or new values of its own)."""
    return cls(**{field.name: getattr(result, field.name) for field in dataclasses.fields(result)} | extra)


def key_fields(cls: type) -> tuple[str, ...]:
    """The fields declared ``key=True`` of result class ``cls``, in order: what names one of its
    items (a flagged day is its series and its day)."""
    return tuple(name for name, _, declared in result_fields(cls) if declared.key)
