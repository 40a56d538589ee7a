"""JSON Schemas (draft 2020-12, the dialect of OpenAPI 3.1) of the bodies the API serves.

Written from the code that builds each body (``exporter/analysis``, ``exporter/areas``) and
checked against real responses by ``tests/test_openapi.py``. Every object lists every field it
can carry and allows no other (``additionalProperties: false``), so a field added to a body
without being documented here fails that test. A nullable number is an undefined one (never NaN):
a status code in the same object says why.

``SECTION_BODIES`` holds each area's own fields; the header every section shares (``time_range``,
``generated_at``, ``sources``, ``stale``) depends on the route's parameters and the area's
sources, so ``api.openapi`` adds it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, get_args, get_type_hints

from exporter.analysis.segments import SEGMENT_NAMES, SEGMENTATION_METHOD, SegmentThresholds
from exporter.analysis.trends import TrendLabel

Schema = dict[str, Any]


def record(properties: dict[str, Schema], *, optional: Iterable[str] = (), description: str | None = None) -> Schema:
    """An object with exactly these fields, all required except ``optional``."""
    optional = set(optional)
    schema: Schema = {"type": "object", "properties": properties,
                      "required": [name for name in properties if name not in optional],
                      "additionalProperties": False}
    return schema | ({"description": description} if description else {})


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (``schema`` has a single ``type``)."""
    return schema | {"type": [schema["type"], "null"]}


def list_of(items: Schema, **constraints: Any) -> Schema:
    return {"type": "array", "items": items} | constraints


def mapping_of(values: Schema, description: str) -> Schema:
    """An object keyed by data (names, ratings, variants), not by field names."""
    return {"type": "object", "additionalProperties": values, "description": description}


def enum(values: Iterable[str], description: str | None = None) -> Schema:
    return {"type": "string", "enum": list(values)} | ({"description": description} if description else {})


def described(schema: Schema, description: str) -> Schema:
    return schema | {"description": description}


TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
             "description": "ISO 8601 in UTC with a Z suffix"}
TEXT = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}
NUMBER = {"type": "number"}
NONNEGATIVE = {"type": "number", "minimum": 0}
FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
SECONDS = described(NONNEGATIVE, "seconds")
INTERVAL = nullable(list_of(NUMBER, minItems=2, maxItems=2)) | {"description": "[low, high]; null when undefined"}
STATUS_CODES = list_of(TEXT, description="machine-readable codes: why a number is null or approximate, "
                                         "or what else qualifies the object (empty when nothing does)")


def series(value: Schema, description: str) -> Schema:
    """Every bucket of the window, oldest first."""
    return list_of(record({"timestamp": TIMESTAMP, "value": value}), description=description)


ERROR = record({"error": record({
    "code": described(TEXT, "snake_case, stable"),
    "message": described(TEXT, "for humans; names the valid values or the missing setting"),
})}, description="The one error envelope of the API")

SOURCE_SUMMARY = record({
    "status": enum(("up", "down", "disabled")),
    "last_success": nullable(TIMESTAMP),
    "age_seconds": nullable(SECONDS) | {"description": "seconds since the last successful refresh"},
    "error": nullable(TEXT) | {"description": "why the source is down or disabled; null when up"},
})

_TOP_ITEM = record({"name": TEXT, "visitors": COUNT, "pageviews": nullable(COUNT)})

USAGE_TRENDS = record({
    "total_users": described(COUNT, "users ever seen (see basis)"),
    "active_users": described(COUNT, "users active in the window (see basis)"),
    "page_views": COUNT,
    "unique_visitors": described(COUNT, "Plausible's unique visitors (its visitor id rotates daily)"),
    "visits": COUNT,
    "avg_session_duration": nullable(SECONDS),
    "bounce_rate": nullable(PERCENT) | {"description": "percent 0..100, as Plausible reports it"},
    "views_per_visit": nullable(NONNEGATIVE),
    "current_visitors": described(COUNT, "visitors in the last 5 minutes"),
    "page_views_all_time": COUNT,
    "users_over_time": series(NONNEGATIVE, "unique visitors per bucket (hour or day)"),
    "pageviews_over_time": series(NONNEGATIVE, "pageviews per bucket (hour or day)"),
    "top_pages": list_of(_TOP_ITEM, description="largest first"),
    "traffic_sources": list_of(_TOP_ITEM, description="largest first"),
    "basis": enum(("identified_users", "plausible_visitors"), "where total_users and active_users come from"),
    "status_codes": STATUS_CODES,
    "approximation": described(TEXT, "how the figures are approximated (code approximated_range)"),
}, optional=["approximation"])

FEATURE_ADOPTION = record({
    "total_features": COUNT,
    "features": list_of(record({
        "feature_name": TEXT,
        "total_uses": nullable(COUNT),
        "unique_users": nullable(COUNT),
        "adoption_rate": nullable(FRACTION) | {"description": "unique users of the feature / active users, 0..1"},
        "all_time_uses": nullable(COUNT),
        "trend": enum(get_args(TrendLabel)),
        "trend_detail": record({"p_value": nullable(FRACTION), "relative_change": nullable(NUMBER),
                                "slope": nullable(NUMBER) | {"description": "Theil-Sen slope, users per week"},
                                "n_points": COUNT}),
        "weekly_users": series(nullable(COUNT), "unique users of the feature per whole week"),
        "first_seen": nullable(TIMESTAMP),
        "last_used": nullable(TIMESTAMP),
        "status_codes": STATUS_CODES,
    }), description="in configuration order"),
    "most_adopted": nullable(TEXT),
    "least_adopted": nullable(TEXT),
    "adoption_trend": series(nullable(FRACTION), "mean adoption rate of the observable features per whole week"),
    "active_users": COUNT,
    "definitions": mapping_of(TEXT, "how each figure is defined"),
    "status_codes": STATUS_CODES,
    "basis": enum(("identified_users", "plausible_visitors"), "where unique users come from"),
    "unknown_goals": list_of(TEXT, description="configured goals Plausible does not know"),
    "approximation": TEXT,
}, optional=["approximation"])

_VARIANT = record({
    "variant_id": TEXT,
    "name": TEXT,
    "assignments": nullable(COUNT),
    "conversions": nullable(COUNT),
    "conversion_rate": nullable(FRACTION),
    "confidence_interval_low": nullable(FRACTION) | {"description": "Wilson 95% interval of conversion_rate"},
    "confidence_interval_high": nullable(FRACTION),
    "absolute_lift": nullable(NUMBER),
    "absolute_lift_ci": INTERVAL,
    "relative_lift": nullable(NUMBER),
    "relative_lift_ci": INTERVAL,
    "p_value": nullable(FRACTION) | {"description": "fixed-horizon two-sided unpooled z-test"},
    "p_value_pooled": nullable(FRACTION) | {"description": "the same test with the pooled standard error"},
    "sequential_p_value": nullable(FRACTION) | {"description": "always-valid p-value of the confidence "
                                                               "sequence (sequential mode only)"},
    "adjusted_p_value": nullable(FRACTION) | {"description": "the deciding p-value (sequential_p_value in "
                                                             "sequential mode, else p_value), Holm-adjusted "
                                                             "over the treatment arms"},
    "is_significant": {"type": ["boolean", "null"]},
    "chance_to_beat_control": nullable(FRACTION),
    "expected_loss": nullable(NONNEGATIVE),
    "status_codes": STATUS_CODES,
}, description="the control's comparison fields are null")

RECOMMENDATIONS = ("ship", "roll_back", "keep_running", "inconclusive", "insufficient_data", "investigate_srm",
                   "no_data", "no_comparison")

EXPERIMENT_RESULTS = record({"experiments": list_of(record({
    "experiment_id": TEXT,
    "experiment_name": TEXT,
    "status": described(TEXT, "as the Experimentation Service reports it (draft, running, stopped)"),
    "start_date": nullable(TIMESTAMP),
    "end_date": nullable(TIMESTAMP),
    "control": nullable(TEXT),
    "alpha": nullable(FRACTION),
    "analysis_mode": enum(("fixed", "sequential")),
    "multiple_testing": TEXT,
    "variants": list_of(_VARIANT),
    "srm": record({"p_value": nullable(FRACTION),
                   "level": enum(("ok", "warn", "fail", "not_computable")),
                   "expected": mapping_of(nullable(NONNEGATIVE), "expected assignments per variant"),
                   "observed": mapping_of(nullable(COUNT), "assignments per variant")}),
    "p_value": nullable(FRACTION) | {"description": "the smallest adjusted p over the treatment arms"},
    "is_significant": {"type": "boolean"},
    "winner": nullable(TEXT),
    "required_sample_size": nullable(COUNT) | {"description": "users per arm"},
    "required_sample_size_formula": TEXT,
    "sample_progress": nullable(NONNEGATIVE) | {"description": "smallest arm / required_sample_size"},
    "recommendation": enum(RECOMMENDATIONS),
    "recommendation_text": TEXT,
    "status_codes": STATUS_CODES,
}))})

FEEDBACK = record({
    "total": COUNT,
    "invalid_ratings": COUNT,
    "average_rating": nullable({"type": "number", "minimum": 1, "maximum": 5}),
    "rating_distribution": record({str(star): COUNT for star in range(1, 6)},
                                  description="responses per star rating"),
    "csat": nullable(FRACTION) | {"description": "share of 4-5 star ratings"},
    "csat_ci": INTERVAL,
    "nps_5star": record({"score": nullable({"type": "number", "minimum": -100, "maximum": 100}),
                         "promoters": COUNT, "passives": COUNT, "detractors": COUNT},
                        description="5-star NPS: promoters 5, passives 4, detractors 1-3 (not a 0-10 NPS)"),
    "sentiment": record({"average_compound": nullable({"type": "number", "minimum": -1, "maximum": 1}),
                         "positive": COUNT, "neutral": COUNT, "negative": COUNT, "unknown": COUNT}),
    "by_category": list_of(record({"category": TEXT, "count": COUNT,
                                   "average_rating": nullable({"type": "number", "minimum": 1, "maximum": 5})}),
                           description="top categories by volume, then 'other'"),
    "by_type": mapping_of(COUNT, "responses per feedback type, largest first"),
    "open_items_in_window": described(COUNT, "items submitted in the window that are still open or in progress"),
    "status_codes": STATUS_CODES,
    "window_start": TIMESTAMP,
    "open_items": described(COUNT, "every item still open or in progress, whenever submitted (the backlog)"),
    "skipped_items": described(COUNT, "malformed items skipped"),
})

_THRESHOLD_TYPES = get_type_hints(SegmentThresholds)
_THRESHOLDS = record({f.name: COUNT if _THRESHOLD_TYPES[f.name] is int else NUMBER
                      for f in dataclasses.fields(SegmentThresholds)}, description="the configured rule thresholds")

USER_SEGMENTS = record({
    "total_users": COUNT,
    "segments": list_of(record({
        "segment_name": enum(SEGMENT_NAMES),
        "user_count": COUNT,
        "percentage": nullable(PERCENT),
        "avg_engagement": nullable(PERCENT) | {"description": "engagement score 0..100"},
        "characteristics": record({name: nullable(NONNEGATIVE) for name in (
            "median_active_days_28d", "median_active_days_previous_28d", "median_days_since_active",
            "median_features_used_28d", "median_age_days")}),
    })),
    "segmentation_method": {"const": SEGMENTATION_METHOD},
    "definitions": record({
        "day": TEXT, "active_day": TEXT,
        "meaningful_events": {"oneOf": [TEXT, list_of(TEXT)]},
        "features": {"oneOf": [TEXT, mapping_of(TEXT, "event name -> feature name")]},
        "population": TEXT,
        "measures": mapping_of(TEXT, "what each measure in the rules means"),
        "rules": list_of(record({"segment": enum(SEGMENT_NAMES), "rule": TEXT})),
        "rule_order": TEXT,
        "thresholds": _THRESHOLDS,
        "engagement_score": TEXT,
    }),
    "power_user_curve": list_of(record({"days_active": COUNT, "users": COUNT}),
                                description="users by active days in the last 28 days"),
    "last_updated": TIMESTAMP,
    "status_codes": STATUS_CODES,
    "time_range_note": TEXT,
})

FUNNEL = record({
    "funnel_name": TEXT,
    "description": TEXT,
    "method": enum(("ordered_events", "aggregate_goals")),
    "method_note": described(TEXT, "how aggregate_goals counts a step"),
    "window_seconds": COUNT,
    "steps": list_of(record({
        "step_name": TEXT,
        "step_number": described(COUNT, "1-based"),
        "users_entered": described(COUNT, "users who reached this step"),
        "users_completed": described(COUNT, "users who reached the next step (the last step: users_entered)"),
        "completion_rate": nullable(FRACTION),
        "completion_rate_ci": INTERVAL,
        "drop_off_rate": nullable(FRACTION),
        "avg_time_to_next_step": nullable(SECONDS),
        "median_time_to_next_step": nullable(SECONDS),
        "p90_time_to_next_step": nullable(SECONDS),
        "status_codes": STATUS_CODES,
    })),
    "overall_conversion_rate": nullable(FRACTION),
    "total_users": COUNT,
    "completed_users": COUNT,
    "avg_completion_time": nullable(SECONDS),
    "median_completion_time": nullable(SECONDS),
    "incomplete_cohort": described({"type": "boolean"}, "entries whose window is still open may yet complete"),
    "status_codes": STATUS_CODES,
    "entries_between": list_of(TIMESTAMP, minItems=2, maxItems=2,
                               description="[start, end) of the entries counted (ordered_events)"),
    "approximation": TEXT,
}, optional=["method_note", "entries_between", "approximation"])

# The body of each area's section, by area name (the dashboard key).
SECTION_BODIES: dict[str, Schema] = {
    "usage_trends": USAGE_TRENDS,
    "feature_adoption": FEATURE_ADOPTION,
    "experiment_results": EXPERIMENT_RESULTS,
    "feedback": FEEDBACK,
    "user_segments": USER_SEGMENTS,
    "funnels": FUNNEL,
}

FUNNEL_CATALOGUE = record({
    "funnels": list_of(record({
        "name": TEXT, "description": TEXT, "window_seconds": COUNT,
        "steps": list_of(record({"name": TEXT, "event": TEXT, "goal": nullable(TEXT)})),
    })),
    "method": enum(("ordered_events", "aggregate_goals"), "how funnels are computed with the sources configured"),
})

REFRESH_OUTCOME = record({"sources": mapping_of(
    enum(("refreshed", "failed", "pending", "disabled", "not_used")),
    "per source: refreshed, failed, pending (still running at the deadline: 202), disabled, or not_used")})

HEALTH = record({
    "status": enum(("healthy", "degraded")),
    "service": {"const": "analytics-dashboard"},
    "version": TEXT,
    "sources": mapping_of(
        SOURCE_SUMMARY | {"additionalProperties": {"type": ["string", "number", "integer", "null"]}},
        "per source: the summary plus source-specific facts (Plausible API version and request budget, "
        "events file size)"),
})
