"""Feedback summary checked against hand computations and statsmodels' Wilson interval."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from exporter.analysis.feedback import cap_categories, open_item_count, summarise_feedback
from exporter.sources.feedback import FeedbackItem
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
summarise_feedback = published(summarise_feedback)

WHEN = datetime(2025, 12, 20, 10, 15, tzinfo=timezone.utc)


def item(rating, category="Documentation", feedback_type="feedback", status="open",
         sentiment=None, compound=None):
    return FeedbackItem(rating, category, feedback_type, status, sentiment, compound, WHEN)


def statsmodels_wilson(successes, trials):
    return list(proportion_confint(successes, trials, alpha=0.05, method="wilson"))


# Twelve items worked through by hand below; two have out-of-range ratings (0 and 6).
HAND_ITEMS = [
    item(5, "Documentation", "feedback", "open", "positive", 0.8),
    item(5, "Documentation", "feedback", "resolved", "positive", 0.6),
    item(5, "UI/UX", "feature_request", "in_progress", "positive", 0.5),
    item(4, "UI/UX", "feedback", "dismissed", "neutral", 0.0),
    item(4, "Performance", "bug_report", "open", "neutral", None),
    item(3, "Performance", "bug_report", "resolved", "negative", -0.4),
    item(2, "Bug Report", "bug_report", "open", "negative", -0.7),
    item(1, "Other", "bug_report", "resolved", None, None),
    item(5, None, None, None, "mixed", 0.2),
    item(4, "  ", "feedback", "open", "neutral", 0.1),
    item(0, "Documentation", "feedback", "open", "positive", 0.9),
    item(6, "Chatbot", "feedback", "resolved", None, None),
]


def test_hand_worked_summary():
    summary = summarise_feedback(HAND_ITEMS, top_categories=3)
    # Valid ratings 5,5,5,4,4,3,2,1,5,4: sum 38 over 10.
    assert summary["total"] == 12
    assert summary["invalid_ratings"] == 2
    assert summary["average_rating"] == pytest.approx(3.8)
    assert summary["rating_distribution"] == {"1": 1, "2": 1, "3": 1, "4": 3, "5": 4}
    # 4-5 stars: 7 of 10. 5-star score: 100 * (4 promoters - 3 detractors) / 10.
    assert summary["csat"] == pytest.approx(0.7)
    assert summary["csat_ci"] == pytest.approx(statsmodels_wilson(7, 10), abs=1e-12)
    assert summary["nps_5star"] == {"score": pytest.approx(10.0), "promoters": 4,
                                    "passives": 3, "detractors": 3}
    # Compounds 0.8+0.6+0.5+0.0-0.4-0.7+0.2+0.1+0.9 = 2.0 over 9; "mixed" and None are unknown.
    assert summary["sentiment"] == {"average_compound": pytest.approx(2.0 / 9), "positive": 4,
                                    "neutral": 3, "negative": 2, "unknown": 3}
    # Ranked: Documentation 3, then Performance / UI/UX / uncategorised at 2 (by name);
    # other = uncategorised 2 + Bug Report 1 + Chatbot 1 + the literal "Other" 1, with
    # valid ratings 5, 4, 2, 1 -> 3.0. Documentation's rating-0 item counts but is not averaged.
    assert summary["by_category"] == [
        {"category": "Documentation", "count": 3, "average_rating": 5.0},
        {"category": "Performance", "count": 2, "average_rating": 3.5},
        {"category": "UI/UX", "count": 2, "average_rating": 4.5},
        {"category": "other", "count": 5, "average_rating": 3.0},
    ]
    assert list(summary["by_type"].items()) == [
        ("feedback", 6), ("bug_report", 4), ("feature_request", 1), ("unknown", 1),
    ]
    assert summary["open_items_in_window"] == 6  # five open + one in_progress
    assert summary["status_codes"] == []


def test_uncapped_categories_show_blank_as_uncategorised():
    rows = summarise_feedback(HAND_ITEMS)["by_category"]
    assert [(row["category"], row["count"]) for row in rows] == [
        ("Documentation", 3), ("Performance", 2), ("UI/UX", 2), ("uncategorised", 2),
        ("Bug Report", 1), ("Chatbot", 1), ("other", 1),
    ]
    assert rows[5]["average_rating"] is None  # Chatbot's only rating was invalid


@pytest.mark.parametrize("successes, trials", [(45, 100), (0, 7), (7, 7), (1, 3), (180, 200)])
def test_csat_interval_matches_statsmodels(successes, trials):
    items = [item(5)] * successes + [item(2)] * (trials - successes)
    summary = summarise_feedback(items)
    assert summary["csat"] == pytest.approx(successes / trials)
    assert summary["csat_ci"] == pytest.approx(statsmodels_wilson(successes, trials), abs=1e-12)


def test_csat_interval_reference_value():
    summary = summarise_feedback([item(4)] * 45 + [item(3)] * 55)
    assert summary["csat_ci"] == pytest.approx([0.356145, 0.547554], abs=1e-6)


def test_no_feedback_is_all_nulls_and_zeros():
    summary = summarise_feedback([])
    assert summary == {
        "total": 0, "invalid_ratings": 0, "average_rating": None,
        "rating_distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
        "csat": None, "csat_ci": None,
        "nps_5star": {"score": None, "promoters": 0, "passives": 0, "detractors": 0},
        "sentiment": {"average_compound": None, "positive": 0, "neutral": 0, "negative": 0,
                      "unknown": 0},
        "by_category": [], "by_type": {}, "open_items_in_window": 0,
        "status_codes": ["no_ratings", "no_sentiment_scores"],
    }


def test_only_invalid_ratings_and_non_finite_compound():
    summary = summarise_feedback([item(0, compound=float("nan")), item(7, compound=0.5)])
    assert (summary["total"], summary["invalid_ratings"]) == (2, 2)
    assert summary["average_rating"] is None and summary["csat"] is None
    assert summary["sentiment"]["average_compound"] == 0.5
    assert summary["status_codes"] == ["no_ratings"]
    json.dumps(summary, allow_nan=False)


def test_open_items_are_open_or_in_progress():
    assert open_item_count({"open": 7, "in_progress": 2, "resolved": 40, "dismissed": 3}) == 9
    assert open_item_count({}) == 0


# --- cap_categories -------------------------------------------------------------------------


def test_cap_keeps_top_n_with_name_tie_break_and_other_last():
    counts = {"b": 5, "a": 5, "c": 9, "d": 1, "e": 1}
    assert list(cap_categories(counts, 2).items()) == [("c", 9), ("a", 5), ("other", 7)]


def test_cap_without_overflow_has_no_other():
    assert cap_categories({"x": 2, "y": 3}, 5) == {"y": 3, "x": 2}


def test_cap_folds_literal_other_and_allows_zero():
    counts = {"Other": 4, "other": 1, "UI/UX": 2}
    assert cap_categories(counts, 8) == {"UI/UX": 2, "other": 5}
    assert cap_categories(counts, 0) == {"other": 7}
    with pytest.raises(ValueError):
        cap_categories(counts, -1)


# --- property test against a plain reference ------------------------------------------------

random_items = st.lists(
    st.builds(
        item,
        rating=st.integers(min_value=-1, max_value=7),
        category=st.sampled_from(["A", "B", "C", "D", "E", None]),
        feedback_type=st.sampled_from(["feedback", "bug_report", "feature_request", None]),
        status=st.sampled_from(["open", "in_progress", "resolved", "dismissed", None]),
        sentiment=st.sampled_from(["positive", "neutral", "negative", None]),
        compound=st.one_of(st.none(), st.floats(min_value=-1, max_value=1)),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(random_items, st.integers(min_value=0, max_value=6))
def test_random_items_match_plain_counts(items, top_n):
    summary = summarise_feedback(items, top_categories=top_n)
    valid = [it.rating for it in items if 1 <= it.rating <= 5]
    good = len([r for r in valid if r >= 4])
    promoters = len([r for r in valid if r == 5])
    detractors = len([r for r in valid if r <= 3])
    assert summary["total"] == len(items)
    assert summary["invalid_ratings"] == len(items) - len(valid)
    assert sum(summary["rating_distribution"].values()) == len(valid)
    assert sum(row["count"] for row in summary["by_category"]) == len(items)
    assert len([row for row in summary["by_category"] if row["category"] != "other"]) <= top_n
    assert sum(summary["by_type"].values()) == len(items)
    assert summary["open_items_in_window"] == len([it for it in items
                                         if it.status in ("open", "in_progress")])
    if valid:
        assert summary["average_rating"] == pytest.approx(sum(valid) / len(valid))
        assert summary["csat"] == pytest.approx(good / len(valid))
        assert summary["csat_ci"] == pytest.approx(statsmodels_wilson(good, len(valid)),
                                                   abs=1e-12)
        assert summary["nps_5star"]["score"] == pytest.approx(
            100 * (promoters - detractors) / len(valid))
    else:
        assert summary["csat"] is None and summary["csat_ci"] is None
    json.dumps(summary, allow_nan=False)
