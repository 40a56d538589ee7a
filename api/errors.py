"""The one error envelope of the API: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

from exporter.errors import SourceDisabled, SourceError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# The wording of the errors both an endpoint and the dashboard (for that endpoint's section) answer.
INTERNAL_ERROR_MESSAGE = "internal error; see the service log"


def source_error_message(error: SourceError) -> str:
    """What a section answers when its source is disabled or down."""
    if isinstance(error, SourceDisabled):
        return str(error)
    return f"source {error} (data is unavailable until it recovers)"


def deadline_message(timeout: float) -> str:
    """What a section answers when its sources did not answer within the request deadline."""
    return f"the sources did not answer within {timeout:g} s; the refresh continues, retry shortly"
