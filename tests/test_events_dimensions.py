"""Dimensions from the event log (contract sections 6 and 7) against plain per-event references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.breakdowns import NONE, OTHER
from exporter.events.file_loader import load_events_file
from exporter.events.log import ABSENT, EventLog
from exporter.events.log_dimensions import filter_users, user_values

USERS = ["a", "b", "c", "d", "e", "f"]
TEAMS = ["payments", "search", "web", NONE, OTHER]


def make_log(events):
    """``events``: (user, second, team or None, role or None) in file order."""
    users = {user: code for code, user in enumerate(dict.fromkeys(u for u, *_ in events))}
    properties = {}
    for index, name in ((2, "team"), (3, "role")):
        values = list(dict.fromkeys(e[index] for e in events if e[index] is not None))
        codes = np.array([ABSENT if e[index] is None else values.index(e[index]) for e in events], dtype=np.int64)
        properties[name] = (codes, values)
    return EventLog.build(
        np.array([users[u] for u, *_ in events], dtype=np.int32), np.zeros(len(events), dtype=np.int32),
        np.array([t for _, t, *_ in events], dtype=np.int64), list(users), ["e"] * bool(events), properties)


def reference_values(events, index, end):
    """Per user: the value on its latest event carrying one before end (by time, then the greatest
    value text among events of the same second)."""
    latest = {}
    carrying = [event for event in events if event[1] < end and event[index] is not None and event[index] != NONE]
    for event in sorted(carrying, key=lambda event: (event[1], event[index])):
        latest[event[0]] = event[index]
    return {user: latest.get(user, NONE) for user in dict.fromkeys(u for u, *_ in events)}


events_strategy = st.lists(
    st.tuples(st.sampled_from(USERS), st.integers(0, 20),
              st.one_of(st.none(), st.none(), st.sampled_from(TEAMS)),
              st.sampled_from([None] * 20 + ["dev", "sre"])),  # rare: often stored sparsely
    max_size=60)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.integers(-1, 22))
def test_user_values_are_the_latest_carried_value(events, end):
    log = make_log(events)
    assert log.properties["role"].is_sparse or sum(e[3] is not None for e in events) * 9 >= len(events)
    for index, name in ((2, "team"), (3, "role")):
        values = user_values(log, name, end)
        got = {log.user_names[user]: values.label(code) for user, code in enumerate(values.codes.tolist())}
        assert got == reference_values(events, index, end)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.integers(-1, 22),
       st.lists(st.sampled_from(TEAMS + ["nobody's"]), max_size=3),
       st.one_of(st.none(), st.lists(st.sampled_from(["dev", "sre", NONE]), min_size=1, max_size=2)))
def test_filters_or_within_a_property_and_across_properties(events, end, teams, roles):
    log = make_log(events)
    filters = [("team", teams)] + ([("role", roles)] if roles is not None else [])
    selected = filter_users(log, filters, end)
    team_of, role_of = reference_values(events, 2, end), reference_values(events, 3, end)
    expected = {user for user in team_of if team_of[user] in teams and (roles is None or role_of[user] in roles)}
    assert {log.user_names[u] for u in np.flatnonzero(selected).tolist()} == expected


def test_dimensions_of_a_loaded_file(tmp_path):
    lines = [
        {"user_id": "u1", "event": "e", "timestamp": 10, "properties": {"team": "payments", "role": "dev"}},
        {"user_id": "u2", "event": "e", "timestamp": 11, "props": {"team": 3}},
        {"user_id": "u1", "event": "e", "timestamp": 12, "properties": {"team": "search"}},
        {"user_id": "u3", "event": "e", "timestamp": 13},
        {"user_id": "u2", "event": "e", "timestamp": 14, "properties": {"team": True}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = load_events_file(path, properties=["team", "role"]).log

    def labels(name, end):
        values = user_values(log, name, end)
        return {log.user_names[u]: values.label(c) for u, c in enumerate(values.codes.tolist())}

    assert labels("team", 12) == {"u1": "payments", "u2": "3", "u3": NONE}
    assert labels("team", 100) == {"u1": "search", "u2": "true", "u3": NONE}
    assert labels("role", 100) == {"u1": "dev", "u2": NONE, "u3": NONE}
    chosen = filter_users(log, [("team", ["3", NONE]), ("role", [NONE])], 12)
    assert [log.user_names[u] for u in np.flatnonzero(chosen)] == ["u2", "u3"]
    assert not filter_users(log, [("team", ["nobody's"])], 100).any()
    with pytest.raises(KeyError, match="not loaded"):
        user_values(log, "region", 100)
