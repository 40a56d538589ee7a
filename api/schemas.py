"""JSON Schemas (draft 2020-12, the dialect of OpenAPI 3.1) of the API's own documents.

The sections' schemas are not written here: each is derived from its area's typed result
(:func:`exporter.results.json_schema`). What remains are the documents of the API itself: the
error envelope, ``/health`` and the forced refresh's outcome.
"""

from __future__ import annotations

from typing import Any, Iterable

from exporter.health import SourceSummary
from exporter.results import TIMESTAMP_SCHEMA, json_schema

Schema = dict[str, Any]


def record(properties: dict[str, Schema], *, description: str | None = None) -> Schema:
    """An object with exactly these fields, all required."""
    schema: Schema = {"type": "object", "properties": properties, "required": list(properties),
                      "additionalProperties": False}
    return schema | ({"description": description} if description else {})


def mapping_of(values: Schema, description: str) -> Schema:
    """An object keyed by data (names, sources), not by field names."""
    return {"type": "object", "additionalProperties": values, "description": description}


def enum(values: Iterable[str], description: str | None = None) -> Schema:
    return {"type": "string", "enum": list(values)} | ({"description": description} if description else {})


def described(schema: Schema, description: str) -> Schema:
    return schema | {"description": description}


TIMESTAMP = TIMESTAMP_SCHEMA | {"description": "ISO 8601 in UTC with a Z suffix"}
TEXT = {"type": "string"}

ERROR = record({"error": record({
    "code": described(TEXT, "snake_case, stable"),
    "message": described(TEXT, "for humans; names the valid values or the missing setting"),
})}, description="The one error envelope of the API")

REFRESH_OUTCOME = record({"sources": mapping_of(
    enum(("refreshed", "failed", "pending", "disabled", "not_used")),
    "per source: refreshed, failed, pending (still running at the deadline: 202), disabled, or not_used")})

REPORT_SENDING = record({"report": described(TEXT, "the report's name"),
                         "status": enum(("sending",), "the send runs in the background")})

HEALTH = record({
    "status": enum(("healthy", "degraded")),
    "service": {"const": "analytics-dashboard"},
    "version": TEXT,
    "sources": mapping_of(
        json_schema(SourceSummary) | {"additionalProperties": {"type": ["string", "number", "integer", "null"]}},
        "per source: the summary plus source-specific facts (Plausible API version and request budget, "
        "events file size and load)"),
})
