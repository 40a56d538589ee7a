"""Errors that cross layers: a source failed, or a source is not configured."""

from __future__ import annotations


class SourceError(Exception):
    """An upstream could not give us data. The message is ours and safe to publish."""

    def __init__(self, source: str, message: str, *, code: str = "upstream_error") -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.code = code


class SourceDisabled(SourceError):
    """A source is switched off or lacks a setting; its endpoints answer 503 saying which."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason, code="source_disabled")
