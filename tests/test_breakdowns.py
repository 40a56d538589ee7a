"""Breakdown groups and the funnel groups' test against the rest, against independent computations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats import proportion
from statsmodels.stats.multitest import multipletests

from exporter.analysis.breakdowns import OTHER, Selection, rank_groups, vs_rest


def plain_groups(values, counted, max_groups):
    """The groups written out plainly: sort the values with users, keep the first max_groups."""
    present = [(value, users) for value, users in zip(values, counted) if users > 0]
    named = sorted((pair for pair in present if pair[0] != OTHER), key=lambda pair: (-pair[1], pair[0]))
    kept = named[:max_groups]
    rest = named[max_groups:] + [pair for pair in present if pair[0] == OTHER]
    labels = [value for value, _ in kept] + ([OTHER] if rest else [])
    users = [n for _, n in kept] + ([sum(n for _, n in rest)] if rest else [])
    return labels, users, len(rest)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "(none)", "(other)", "dd", "é"]), st.integers(0, 5)),
                min_size=0, max_size=7, unique_by=lambda pair: pair[0]),
       st.integers(1, 4))
def test_groups_are_the_largest_values_then_the_rest_merged(pairs, max_groups):
    values, counted = [value for value, _ in pairs], [users for _, users in pairs]
    groups = rank_groups(values, counted, max_groups)
    labels, users, other_values = plain_groups(values, counted, max_groups)
    assert list(groups.labels) == labels and groups.other_values == other_values
    assert [sum(counted[code] for code in members) for members in groups.members] == users
    # Every value with users is in exactly one group.
    assert sorted(code for members in groups.members for code in members) == \
        [code for code, n in enumerate(counted) if n > 0]


def test_a_tie_is_broken_by_the_value():
    groups = rank_groups(["b", "a", "c"], [2, 2, 1], 2)
    assert groups.labels == ("a", "b", OTHER) and groups.other_values == 1


@pytest.mark.parametrize("entered, completed", [
    ([120, 80, 40, 10], [60, 20, 30, 1]),
    ([500, 500], [100, 140]),
    ([30, 1, 2000], [3, 1, 400]),
])
@pytest.mark.usefixtures("without_gc_collect")
def test_each_group_against_the_rest_matches_statsmodels_with_holm(entered, completed):
    tests = vs_rest(entered, completed)
    expected = []
    for group, (n, x) in enumerate(zip(entered, completed)):
        rest_n, rest_x = sum(entered) - n, sum(completed) - x
        expected.append(proportion.test_proportions_2indep(x, n, rest_x, rest_n, method="wald", compare="diff",
                                                correction=False).pvalue)
    assert [t.p_value for t in tests] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    _, holm, _, _ = multipletests(expected, method="holm")
    assert [t.adjusted_p_value for t in tests] == pytest.approx(list(holm), rel=1e-9, abs=1e-15)
    assert [t.is_significant for t in tests] == [p < 0.05 for p in holm]


def test_a_group_alone_or_empty_has_no_test():
    only, nobody = vs_rest([50, 0], [10, 0])
    assert only.p_value is None and not only.is_significant  # the rest is nobody
    assert nobody.p_value is None and nobody.adjusted_p_value is None


def test_a_selection_reads_each_property_once():
    selection = Selection(filters=(("team", ("payments",)), ("role", ("dev", "ops"))), breakdown="team")
    assert selection.properties == ("team", "role")
