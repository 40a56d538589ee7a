"""The segment measures read the history a chunk at a time: any chunk size gives the same answer."""

from __future__ import annotations

import contextlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.segments import DAY_SECONDS, MEASURES
from exporter.events import log_activity
from tests.event_logs import make_log

NOW = 1_780_000_000
NAMES = ["deploy", "create", "docs.view", "login"]

@contextlib.contextmanager
def chunks_of(size: int):
    saved = log_activity._CHUNK_EVENTS
    log_activity._CHUNK_EVENTS = size
    try:
        yield
    finally:
        log_activity._CHUNK_EVENTS = saved


events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(NAMES),
              st.integers(NOW - 200 * DAY_SECONDS, NOW + 2 * DAY_SECONDS)),
    min_size=1, max_size=80)


@settings(max_examples=100, deadline=None)
@given(events, st.integers(1, 7), st.sampled_from([None, ["deploy", "create"]]),
       st.sampled_from([None, {"deploy": "shipping", "create": "shipping", "docs.view": "docs"}]))
def test_user_activity_is_the_same_for_any_chunk_size(events, chunk, meaningful, features):
    log = make_log(events)
    whole = log_activity.user_activity(log, now=NOW, meaningful_events=meaningful, feature_events=features)
    with chunks_of(chunk):
        chunked = log_activity.user_activity(log, now=NOW, meaningful_events=meaningful, feature_events=features)
    for name in MEASURES:
        assert np.array_equal(getattr(whole, name), getattr(chunked, name), equal_nan=True), name


