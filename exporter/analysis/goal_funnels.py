"""Funnels from Plausible's goal counts when no identified events exist (docs/methods.md#funnels).

Plausible cannot follow a person across days and has no funnel endpoint, so this is a weaker
funnel than :mod:`exporter.analysis.funnels`, and the report says how it was counted:

- ``same_session`` (Stats API v2): step k is the number of visitors whose session completed the
  goals of steps 1..k (``has_done`` filters). The order within the session is not checked and
  the funnel's window does not apply: the session is the window.
- otherwise (Stats API v1, which cannot combine goals): step k is the goal's own unique
  visitors, capped at step k-1's count so that no step converts above 1. That is an upper bound
  on the visitors who did steps 1..k.

Counts are whole visitors; there are no per-person timestamps, so every time field is ``null``
and ``status_codes`` carries ``timings_unavailable``. The report is the ordered one's,
with ``method: "aggregate_goals"`` and a ``method_note`` in words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .funnels import FunnelDefinition, FunnelReport, funnel_report

METHOD = "aggregate_goals"
NO_TIMINGS = "timings_unavailable"
SAME_SESSION_NOTE = ("Plausible goal counts (no identified events source): step k counts visitors whose session "
                     "completed the goals of steps 1..k, in any order; the funnel window does not apply, and "
                     "times between steps are unknown.")
PER_GOAL_NOTE = ("Plausible goal counts (no identified events source; Stats API v1 cannot combine goals): step k "
                 "counts the goal's own unique visitors, capped at the previous step's count, an upper bound on "
                 "those who did steps 1..k; times between steps are unknown.")


def goal_funnel_report(funnel: FunnelDefinition, visitors: Sequence[float], *, same_session: bool,
                       incomplete_cohort: bool) -> FunnelReport:
    """The funnel report from the visitors counted at each step (one count per step)."""
    if len(visitors) != len(funnel.steps):
        raise ValueError(f"funnel {funnel.name!r}: {len(visitors)} counts for {len(funnel.steps)} steps")
    # v2's nested filters are already non-increasing; v1's independent counts are capped here.
    entered = np.minimum.accumulate(np.round(np.asarray(visitors, dtype=float))).astype(np.int64).tolist()
    report = funnel_report(funnel, entered, method=METHOD, incomplete_cohort=incomplete_cohort, codes=[NO_TIMINGS])
    return dataclasses.replace(report, method_note=SAME_SESSION_NOTE if same_session else PER_GOAL_NOTE)
