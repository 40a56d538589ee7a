"""A funnel broken down by team against the same funnel without a breakdown (docs/methods.md#breakdowns).

Target: the breakdown costs at most twice the plain funnel. Both run the file backend's path
end to end on one 10 M-event log of 1 M users in 100 teams of very different sizes (a third of
the events carry the user's team): ``funnel_reach`` (with the selection: each user's latest
team, read in one pass over the events carrying it) then the report -- for the breakdown, the
groups ranked, one report per group listed (``(other)`` included) and each group's test against
the rest. The breakdown is one pass with a group key, not one pass per group, so its cost over
the plain funnel is the value lookup and the per-group reports. The two are checked to agree:
the groups' entrants and completions sum to the plain funnel's.
"""

from __future__ import annotations

import numpy as np

from bench import BenchResult, best_time
from bench.kernels import FUNNEL, NOW, funnel_log, funnel_range
from exporter.analysis.breakdowns import EVERYONE, Selection, rank_groups
from exporter.analysis.funnels import funnel_section, progress_report
from exporter.events.log_funnels import funnel_reach

TEAMS = 100
MAX_GROUPS = 20  # the default max_breakdown_groups
REPEATS = 3
TARGET_RATIO = 2.0


def run() -> list[BenchResult]:
    log = funnel_log(teams=TEAMS)
    range_start, range_end = funnel_range()

    def plain():
        reach = funnel_reach(log, FUNNEL, range_start=range_start, range_end=range_end, selection=EVERYONE)
        return progress_report(FUNNEL, reach, range_end=range_end, now=NOW)

    def broken_down():
        reach = funnel_reach(log, FUNNEL, range_start=range_start, range_end=range_end,
                             selection=Selection(breakdown="team"))
        entrants = np.bincount(reach.groups, minlength=len(reach.values))  # as the funnels area counts them
        groups = rank_groups(reach.values, entrants, MAX_GROUPS)
        return funnel_section(FUNNEL, reach, range_end=range_end, now=NOW, filters=None, dimension="team",
                              groups=groups)

    whole, section = plain(), broken_down()
    groups = section.breakdown.groups
    if (sum(g.report.total_users for g in groups), sum(g.report.completed_users for g in groups)) != \
            (whole.total_users, whole.completed_users):
        raise AssertionError("breakdown: the groups do not add up to the plain funnel")
    plain_s, breakdown_s = best_time(plain, REPEATS), best_time(broken_down, REPEATS)
    return [BenchResult(
        name=f"funnel by team: {len(log) / 1e6:g} M events, {TEAMS} teams", ours=breakdown_s, baseline=plain_s,
        unit="s", target=TARGET_RATIO * plain_s,
        notes=(f"ours: funnel_reach with a breakdown by team + {len(groups)} group reports and their tests "
               f"against the rest; baseline: the plain funnel on the same log; best of {REPEATS}; the breakdown "
               f"costs {breakdown_s / plain_s:.2f}x the plain funnel (target at most {TARGET_RATIO:g}x); the "
               f"groups' entrants and completions sum to the plain funnel's",))]
