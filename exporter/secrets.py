"""A string wrapper for credentials that cannot leak through ``str``, ``repr`` or formatting."""

from __future__ import annotations

import hmac

MASK = "***"


class Secret:
    """Holds a credential. Every textual form is masked; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison, so response timing says nothing about the secret."""
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __format__ = lambda self, *_: MASK  # noqa: E731 - same mask for every textual form
