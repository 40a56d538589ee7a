"""Build frozen dataclasses from plain mappings (parsed YAML), with errors that name the key path.

Configuration is declared once, as dataclasses with defaults; this module turns a nested mapping
into those dataclasses and rejects anything the declaration does not allow: unknown keys, wrong
types, values outside a ``Literal``. A field typed :class:`Secret` also accepts ``<name>_file``,
the path of a file holding the secret (for Kubernetes and Docker secrets).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from .secrets import Secret


class MappingError(ValueError):
    """A value does not fit its declaration; ``path`` is the dotted key path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def build(cls: type, data: Any, path: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data`` (a mapping or None for all defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingError(path, f"expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    secret_files = {f"{name}_file": name for name in fields if _is_secret(hints[name])}
    unknown = sorted(set(data) - set(fields) - set(secret_files))
    if unknown:
        valid = ", ".join(sorted([*fields, *secret_files]))
        raise MappingError(_join(path, unknown[0]), f"unknown key (valid keys here: {valid})")
    kwargs: dict[str, Any] = {}
    for file_key, name in secret_files.items():
        if data.get(file_key) is not None:
            if data.get(name) is not None:
                raise MappingError(_join(path, name), f"give either {name} or {file_key}, not both")
            kwargs[name] = Secret(_read_secret_file(data[file_key], _join(path, file_key)))
    for name, value in data.items():
        if name in fields and name not in kwargs:  # a secret read from its file stays
            kwargs[name] = convert(hints[name], value, _join(path, name))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        if isinstance(error, MappingError):
            raise
        raise MappingError(path, str(error)) from None


def convert(hint: Any, value: Any, path: str) -> Any:
    """Convert one value to ``hint``. Strings are parsed for numbers and booleans (env vars)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        if value is None:
            return None
        if len(options) == 1:  # its own error, which names the key already
            return convert(options[0], value, path)
        errors = []
        for option in options:
            try:
                return convert(option, value, path)
            except MappingError as error:
                errors.append(str(error))
        raise MappingError(path, "; ".join(errors))
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise MappingError(path, f"{value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if origin in (tuple, list):
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise MappingError(path, f"expected a list, got {_kind(value)}")
        return tuple(convert(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if hint is Secret:
        if not isinstance(value, str):
            raise MappingError(path, f"expected a string, got {_kind(value)}")
        return Secret(value)
    if hint is bool:
        return _to_bool(value, path)
    if hint in (int, float):
        return _to_number(hint, value, path)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise MappingError(path, f"expected a string, got {_kind(value)}")
        return str(value)
    if hint is Any:
        return value
    raise MappingError(path, f"unsupported declaration {hint!r}")  # a programming error


def to_plain(obj: Any) -> Any:
    """The dataclass tree as plain data, secrets masked: what ``check-config`` prints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(item) for item in obj]
    if isinstance(obj, Secret):
        return str(obj)
    return obj


def _to_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "off"}:
        return False
    raise MappingError(path, f"expected true or false, got {value!r}")


def _to_number(kind: type, value: Any, path: str) -> int | float:
    if isinstance(value, bool):
        raise MappingError(path, f"expected a number, got {value!r}")
    try:
        number = kind(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise MappingError(path, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is int and isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int | float) or (kind is int and not isinstance(number, int)):
        raise MappingError(path, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(number)


def _read_secret_file(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise MappingError(path, f"expected a file path, got {_kind(value)}")
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise MappingError(path, f"cannot read secret file {value!r}: {error.strerror}") from None


def _is_secret(hint: Any) -> bool:
    return hint is Secret or Secret in typing.get_args(hint)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    return type(value).__name__
