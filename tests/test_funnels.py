"""Ordered funnels against a plain per-user reference implementation written here.

The reference walks each user's events with Python loops, exactly as docs/methods.md#funnel-semantics words
the rules: every step-1 event in [range_start, range_end) is an attempt; the next step is the
earliest matching event strictly later than the current step and within W of the start (and
within the per-step window, when set); a user's result is the furthest attempt, the earliest of
equals. Intervals come from statsmodels, quantiles from the statistics module.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from exporter.analysis.funnels import FunnelDefinition, FunnelStep
from exporter.events.log import EventLog
from exporter.events.log_funnels import analyse_funnel, funnel_reach
from tests.event_logs import make_log, reference_reach
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
analyse_funnel = published(analyse_funnel)

Event = tuple[str, str, int]  # (user, event, epoch seconds)


def make_funnel(events: list[str], window: int, step_windows=None) -> FunnelDefinition:
    steps = tuple(FunnelStep(f"step {i + 1}: {name}", name) for i, name in enumerate(events))
    return FunnelDefinition("test", "a test funnel", steps, window, step_windows)


# --- reference ------------------------------------------------------------------------------

def reference_funnel_reach(events, funnel, range_start, range_end) -> dict[str, list[int]]:
    """{user: step timestamps of the user's furthest (earliest among equal) attempt}."""
    return reference_reach(events, [step.event for step in funnel.steps], funnel.window_seconds, range_start,
                           range_end, funnel.step_windows)


def longest_chain(user_events, steps, window, range_start, range_end) -> int:
    """Brute force: the most steps any chain of the user's events completes (no step windows)."""
    def extend(k, previous, start):
        if k == len(steps):
            return k
        return max(
            [k] + [extend(k + 1, ts, start) for ts, name in user_events
                   if name == steps[k] and previous < ts <= start + window]
        )

    return max(
        [0] + [extend(1, ts, ts) for ts, name in user_events
               if name == steps[0] and range_start <= ts < range_end]
    )


def p90_type7(values):
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def time_stats(values):
    if not values:
        return None, None, None
    return statistics.fmean(values), statistics.median(values), p90_type7(values)


def reference_report(reach: dict[str, list[int]], funnel: FunnelDefinition) -> dict:
    n = len(funnel.steps)
    entered = [sum(1 for times in reach.values() if len(times) > k) for k in range(n)]
    steps = []
    for k in range(n):
        is_last = k + 1 == n
        completed = entered[k] if is_last else entered[k + 1]
        rate = completed / entered[k] if entered[k] and not is_last else None
        ci = None
        if rate is not None:
            ci = list(proportion_confint(completed, entered[k], alpha=0.05, method="wilson"))
        gaps = [t[k + 1] - t[k] for t in reach.values() if len(t) > k + 1] if k + 1 < n else []
        mean, median, p90 = time_stats(gaps)
        steps.append({
            "step_name": funnel.steps[k].name, "step_number": k + 1,
            "users_entered": entered[k], "users_completed": completed,
            "completion_rate": rate, "completion_rate_ci": ci,
            "drop_off_rate": None if rate is None else 1 - rate,
            "avg_time_to_next_step": mean, "median_time_to_next_step": median,
            "p90_time_to_next_step": p90,
        })
    durations = [t[-1] - t[0] for t in reach.values() if len(t) == n]
    mean, median, _ = time_stats(durations)
    return {
        "steps": steps,
        "overall_conversion_rate": entered[-1] / entered[0] if entered[0] else None,
        "total_users": entered[0], "completed_users": entered[-1],
        "avg_completion_time": mean, "median_completion_time": median,
    }


def assert_report_matches(report: dict, expected: dict) -> None:
    for key in ("total_users", "completed_users"):
        assert report[key] == expected[key]
    for key in ("overall_conversion_rate", "avg_completion_time", "median_completion_time"):
        assert report[key] == pytest.approx(expected[key])
    assert len(report["steps"]) == len(expected["steps"])
    for got, want in zip(report["steps"], expected["steps"]):
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, abs=1e-9) if value is not None else None), key


def reach_by_user(log: EventLog, funnel, range_start, range_end) -> dict[str, list[int]]:
    reach = funnel_reach(log, funnel, range_start=range_start, range_end=range_end)
    result = {}
    for index, (user, level) in enumerate(zip(reach.users.tolist(), reach.levels.tolist())):
        # step_times[k] lists the users with levels > k in order: find this user's position.
        positions = [np.count_nonzero(reach.levels[:index] > k) for k in range(level)]
        result[log.user_names[user]] = [
            int(reach.step_times[k][position]) for k, position in enumerate(positions)
        ]
    return result


def analyse(events, funnel, range_start, range_end, now=10**6) -> dict:
    report = analyse_funnel(
        make_log(events), funnel, range_start=range_start, range_end=range_end, now=now
    )
    json.dumps(report, allow_nan=False)  # never NaN or infinity
    return report


# --- property tests -------------------------------------------------------------------------

@st.composite
def scenarios(draw, with_step_windows=True):
    # Few users, names and seconds, so that ties, repeats and window edges are common.
    events = draw(st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.sampled_from("abcd"),
                  st.integers(0, 40)),
        max_size=40,
    ))
    steps = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4))
    window = draw(st.integers(1, 15))
    step_windows = None
    if with_step_windows and len(steps) > 1 and draw(st.booleans()):
        step_windows = tuple(draw(st.none() | st.integers(1, 8)) for _ in steps[1:])
    range_start = draw(st.integers(0, 25))
    range_end = range_start + draw(st.integers(0, 20))
    return events, make_funnel(steps, window, step_windows), range_start, range_end


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_per_user_reach_matches_reference(scenario):
    events, funnel, range_start, range_end = scenario
    got = reach_by_user(make_log(events), funnel, range_start, range_end)
    assert got == reference_funnel_reach(events, funnel, range_start, range_end)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_report_matches_reference(scenario):
    events, funnel, range_start, range_end = scenario
    expected = reference_report(reference_funnel_reach(events, funnel, range_start, range_end), funnel)
    assert_report_matches(analyse(events, funnel, range_start, range_end), expected)


@settings(max_examples=150, deadline=None)
@given(scenarios(with_step_windows=False))
def test_without_step_windows_no_chain_reaches_further(scenario):
    # windowFunnel reports the longest chain; greedy-earliest per attempt must find it.
    events, funnel, range_start, range_end = scenario
    steps = [step.event for step in funnel.steps]
    got = reach_by_user(make_log(events), funnel, range_start, range_end)
    for user in {user for user, _, _ in events}:
        user_events = sorted((ts, name) for u, name, ts in events if u == user)
        longest = longest_chain(user_events, steps, funnel.window_seconds, range_start, range_end)
        assert len(got.get(user, [])) == longest


def test_many_users_match_reference():
    rng = np.random.default_rng(7)
    events = [
        (f"u{user}", "abcde"[name], int(ts))
        for user, name, ts in zip(
            rng.integers(0, 300, 6000), rng.integers(0, 5, 6000), rng.integers(0, 5000, 6000)
        )
    ]
    funnel = make_funnel(["a", "b", "c", "a"], window=400, step_windows=(None, 150, None))
    reach = reference_funnel_reach(events, funnel, 1000, 4000)
    assert reach_by_user(make_log(events), funnel, 1000, 4000) == reach
    assert_report_matches(analyse(events, funnel, 1000, 4000), reference_report(reach, funnel))


# --- seeded cases ---------------------------------------------------------------------------

def test_equal_timestamps_do_not_chain():
    report = analyse([("u", "a", 10), ("u", "b", 10)], make_funnel(["a", "b"], 60), 0, 100)
    assert report["total_users"] == 1
    assert report["completed_users"] == 0


def test_window_end_is_inclusive():
    funnel = make_funnel(["a", "b"], window=60)
    assert analyse([("u", "a", 0), ("u", "b", 60)], funnel, 0, 100)["completed_users"] == 1
    assert analyse([("u", "a", 0), ("u", "b", 61)], funnel, 0, 100)["completed_users"] == 0


def test_window_is_measured_from_the_first_step():
    events = [("u", "a", 0), ("u", "b", 40), ("u", "c", 70)]
    report = analyse(events, make_funnel(["a", "b", "c"], window=60), 0, 100)
    assert [s["users_entered"] for s in report["steps"]] == [1, 1, 0]


def test_entry_range_is_half_open_and_later_steps_may_follow_it():
    funnel = make_funnel(["a", "b"], window=60)
    events = [("early", "a", 100), ("early", "b", 150), ("late", "a", 200), ("late", "b", 210)]
    report = analyse(events, funnel, range_start=100, range_end=200)
    assert report["total_users"] == 1  # "late" starts exactly at range_end
    assert report["completed_users"] == 1  # b at 150 is inside the window, wherever the range ends
    report = analyse([("u", "a", 199), ("u", "b", 250)], funnel, range_start=100, range_end=200)
    assert report["completed_users"] == 1


def test_a_later_attempt_that_gets_further_wins():
    events = [("u", "a", 0), ("u", "a", 100), ("u", "b", 130), ("u", "c", 150)]
    report = analyse(events, make_funnel(["a", "b", "c"], window=60), 0, 1000)
    assert report["completed_users"] == 1
    assert report["avg_completion_time"] == 50  # measured on the attempt starting at 100


def test_earliest_attempt_among_equals_gives_the_times():
    events = [("u", "a", 0), ("u", "b", 30), ("u", "a", 100), ("u", "b", 105)]
    report = analyse(events, make_funnel(["a", "b"], window=60), 0, 1000)
    assert report["steps"][0]["median_time_to_next_step"] == 30


def test_repeated_events_take_the_earliest_next_step():
    events = [("u", "a", 0), ("u", "a", 5), ("u", "b", 20), ("u", "b", 25), ("u", "c", 40)]
    report = analyse(events, make_funnel(["a", "b", "c"], window=60), 0, 1000)
    first, second, _ = report["steps"]
    assert first["avg_time_to_next_step"] == 20
    assert second["avg_time_to_next_step"] == 20


def test_event_in_two_steps_needs_two_events():
    funnel = make_funnel(["a", "b", "a"], window=60)
    assert analyse([("u", "a", 0), ("u", "b", 1)], funnel, 0, 100)["completed_users"] == 0
    events = [("u", "a", 0), ("u", "b", 1), ("u", "a", 2)]
    assert analyse(events, funnel, 0, 100)["completed_users"] == 1
    repeated = make_funnel(["a", "a"], window=60)
    assert analyse([("u", "a", 5)], repeated, 0, 100)["completed_users"] == 0
    assert analyse([("u", "a", 5), ("u", "a", 5)], repeated, 0, 100)["completed_users"] == 0
    assert analyse([("u", "a", 5), ("u", "a", 6)], repeated, 0, 100)["completed_users"] == 1


def test_step_window_takes_the_earliest_next_event_greedily():
    funnel = make_funnel(["a", "b", "c"], window=100, step_windows=(None, 10))
    events = [("u", "a", 0), ("u", "b", 1), ("u", "b", 50), ("u", "c", 55)]
    report = analyse(events, funnel, 0, 1000)
    assert [s["users_entered"] for s in report["steps"]] == [1, 1, 0]
    report = analyse([("u", "a", 0), ("u", "b", 50), ("u", "c", 60)], funnel, 0, 1000)
    assert report["completed_users"] == 1  # exactly the step window: inclusive


def test_rates_counts_and_intervals_by_hand():
    events = (
        [(f"x{i}", "a", 0) for i in range(4)]
        + [(f"x{i}", "b", 10 * (i + 1)) for i in range(3)]
        + [("x0", "c", 100)]
    )
    report = analyse(events, make_funnel(["a", "b", "c"], window=1000), 0, 10)
    first, second, last = report["steps"]
    assert (first["users_entered"], first["users_completed"]) == (4, 3)
    assert (second["users_entered"], second["users_completed"]) == (3, 1)
    assert (last["users_entered"], last["users_completed"]) == (1, 1)
    assert first["completion_rate"] == 0.75 and first["drop_off_rate"] == 0.25
    assert second["completion_rate"] == pytest.approx(1 / 3)
    assert last["completion_rate"] is None and last["drop_off_rate"] is None  # no next step
    assert last["completion_rate_ci"] is None
    assert first["completion_rate_ci"] == pytest.approx(proportion_confint(3, 4, method="wilson"))
    assert first["avg_time_to_next_step"] == 20 and first["median_time_to_next_step"] == 20
    assert first["p90_time_to_next_step"] == pytest.approx(28)  # 20 + 0.8 * (30 - 20)
    assert second["avg_time_to_next_step"] == 90
    assert last["avg_time_to_next_step"] is None and last["status_codes"] == ["last_step"]
    assert report["overall_conversion_rate"] == 0.25
    assert report["avg_completion_time"] == 100 == report["median_completion_time"]
    assert report["method"] == "ordered_events" and report["window_seconds"] == 1000


def test_empty_log_gives_nulls_not_nan():
    funnel = make_funnel(["a", "b"], window=60)
    report = analyse_funnel(EventLog.empty(), funnel, range_start=0, range_end=100, now=1000)
    json.dumps(report, allow_nan=False)
    assert report["total_users"] == 0 and report["completed_users"] == 0
    assert report["overall_conversion_rate"] is None
    assert report["avg_completion_time"] is None and report["median_completion_time"] is None
    assert report["status_codes"] == ["no_entries"]
    for step in report["steps"]:
        assert step["completion_rate"] is None and step["completion_rate_ci"] is None
        assert step["drop_off_rate"] is None and step["avg_time_to_next_step"] is None
        assert "no_entries" in step["status_codes"]


def test_step_event_missing_from_the_log():
    report = analyse([("u", "a", 0), ("u", "b", 5)], make_funnel(["a", "zzz", "b"], 60), 0, 100)
    assert [s["users_entered"] for s in report["steps"]] == [1, 0, 0]
    assert report["status_codes"] == ["no_completions"]
    assert report["steps"][0]["status_codes"] == ["no_transitions"]


def test_single_step_funnel_completes_on_entry():
    report = analyse([("u", "a", 3), ("v", "a", 4)], make_funnel(["a"], 60), 0, 100)
    assert report["total_users"] == report["completed_users"] == 2
    assert report["overall_conversion_rate"] == 1.0
    assert report["median_completion_time"] == 0


def test_incomplete_cohort_while_the_last_window_is_open():
    funnel = make_funnel(["a", "b"], window=60)
    assert analyse([], funnel, 0, 940, now=1000)["incomplete_cohort"] is False
    assert analyse([], funnel, 0, 941, now=1000)["incomplete_cohort"] is True


def test_report_has_exactly_the_contract_fields():
    report = analyse([("u", "a", 0)], make_funnel(["a", "b"], 60), 0, 100)
    assert set(report) == {
        "funnel_name", "description", "method", "window_seconds", "steps",
        "overall_conversion_rate", "total_users", "completed_users", "avg_completion_time",
        "median_completion_time", "incomplete_cohort", "status_codes",
    }
    assert set(report["steps"][0]) == {
        "step_name", "step_number", "users_entered", "users_completed", "completion_rate",
        "completion_rate_ci", "drop_off_rate", "avg_time_to_next_step",
        "median_time_to_next_step", "p90_time_to_next_step", "status_codes",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": ()},
        {"window_seconds": 0},
        {"step_windows": (10,)},
        {"step_windows": (None, 0)},
    ],
)
def test_invalid_definitions_are_rejected(kwargs):
    fields = {
        "name": "f", "description": "", "window_seconds": 60,
        "steps": (FunnelStep("a", "a"), FunnelStep("b", "b"), FunnelStep("c", "c")),
    } | kwargs
    with pytest.raises(ValueError):
        FunnelDefinition(**fields)


def test_range_end_before_start_is_rejected():
    with pytest.raises(ValueError):
        analyse_funnel(EventLog.empty(), make_funnel(["a"], 60), range_start=10, range_end=5, now=0)
