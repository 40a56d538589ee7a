"""The one error envelope of the API: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
