"""Filters and breakdowns by a user dimension: which users a section counts, and its groups.

(docs/api.md#filters-and-breakdowns, docs/methods.md#breakdowns)

A dimension is a user attribute read from an event property: a user's value is the property's
value on the user's latest event carrying it, up to the end of the range; ``(none)`` without one.
The events backends resolve values per user (numpy over the log, or SQL) and hand the sections
per-value results; this module decides the groups shown and tests them:

- a **filter** keeps the users whose value is one of those asked (the same dimension repeated: OR;
  different dimensions: AND);
- a **breakdown** lists the ``max_groups`` largest values by the users the section counts for
  them (a funnel's entrants, a segment report's population), largest first (ties by value),
  then the rest merged into one ``(other)`` group, and says how many values were merged;
- a funnel group's ``vs_rest`` tests its overall conversion against every other user's: a
  two-sided two-proportion z-test with the unpooled standard error, Holm-adjusted over every group
  listed (``(other)`` included), significant below alpha 0.05.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..results import COUNT, PROBABILITY, declare
from .experiments.frequentist import difference_test, holm_adjust
from .experiments.moments import arm_moments

C = TypeVar("C")
NONE = "(none)"
OTHER = "(other)"
VS_REST_ALPHA = 0.05


@dataclass(frozen=True)
class Selection:
    """The users a section counts, and how it splits them; dimensions as their event properties.

    ``filters`` pairs a property with the values kept (OR within, AND across); ``(none)`` keeps
    the users without a value. ``breakdown`` is the property to split by, if any.
    """

    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    breakdown: str | None = None

    @property
    def properties(self) -> tuple[str, ...]:
        """Every property the selection reads."""
        return tuple(dict.fromkeys([*(name for name, _ in self.filters), *filter(None, [self.breakdown])]))


EVERYONE = Selection()


@dataclass(frozen=True)
class Groups:
    """The groups a breakdown lists: ``members[g]`` are the value codes merged into group ``g``."""

    labels: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    other_values: int  # how many distinct values were merged into (other)

    def group_of_value(self, n_values: int) -> np.ndarray:
        """The group index of every value code (all of them are in a group)."""
        group = np.empty(n_values, dtype=np.int64)
        for index, codes in enumerate(self.members):
            group[list(codes)] = index
        return group


def rank_groups(values: Sequence[str], counted: Sequence[int], max_groups: int) -> Groups:
    """The ``max_groups`` values with the most counted users, largest first (ties by value), and
    the rest merged into ``(other)`` (listed last, only when it merges something). Values no
    counted user has are not listed; a value ``(other)`` is merged into the group of that name."""
    ranked = sorted((code for code, users in enumerate(counted) if users > 0 and values[code] != OTHER),
                    key=lambda code: (-counted[code], values[code]))
    kept, merged = ranked[:max_groups], ranked[max_groups:]
    merged += [code for code, users in enumerate(counted) if users > 0 and values[code] == OTHER]
    labels = [values[code] for code in kept]
    members = [(code,) for code in kept]
    if merged:
        labels.append(OTHER)
        members.append(tuple(merged))
    return Groups(tuple(labels), tuple(members), len(merged))


@dataclass(frozen=True)
class VsRest:
    """A group's overall conversion against every other user's (two-sided, unpooled z-test)."""

    p_value: float | None = declare("two-sided p-value of the group's conversion against the rest's", PROBABILITY)
    adjusted_p_value: float | None = declare("Holm-adjusted over every group listed", PROBABILITY)
    is_significant: bool = declare("adjusted_p_value below 0.05")


def vs_rest(entered: Sequence[int], completed: Sequence[int]) -> list[VsRest]:
    """Each group's conversion (``completed / entered``) against all the other groups' together;
    null where a side has nobody, or nobody has a different rate to compare."""
    entered_arr, completed_arr = np.asarray(entered, dtype=float), np.asarray(completed, dtype=float)
    group = arm_moments(entered_arr, completed_arr)
    rest = arm_moments(entered_arr.sum() - entered_arr, completed_arr.sum() - completed_arr)
    p_value = difference_test(group, rest).p_value
    defined = np.isfinite(p_value) & (entered_arr > 0) & (entered_arr < entered_arr.sum())
    adjusted = np.full_like(p_value, np.nan)
    adjusted[defined] = holm_adjust(p_value[defined], np.zeros(int(defined.sum())))
    return [VsRest(float(p) if ok else None, float(a) if ok else None, bool(ok and a < VS_REST_ALPHA))
            for p, a, ok in zip(p_value.tolist(), adjusted.tolist(), defined.tolist())]


def merged_rows(counts: C, rows: Sequence[int]) -> C:
    """``counts`` (a backend's counts: arrays with one row per value on axis 0, and the values)
    with ``rows`` summed into one: the counts of the users of those values together. Summing is
    exact because every user has one value."""
    kept = np.asarray(rows, dtype=np.intp)
    arrays = {field.name: getattr(counts, field.name)[kept].sum(axis=0, keepdims=True)
              for field in dataclasses.fields(counts) if isinstance(getattr(counts, field.name), np.ndarray)}
    return dataclasses.replace(counts, **arrays, values=())


def everyone_of(counts: C) -> C:
    """``counts`` of every user it holds as one row (a breakdown's counts have a row per value)."""
    return merged_rows(counts, range(len(counts.values))) if counts.values else counts


def rows_of_values(counts: Any, values: Sequence[str]) -> list[int]:
    """The rows of ``counts`` holding ``values`` (those it has)."""
    row = {value: index for index, value in enumerate(counts.values)}
    return [row[value] for value in values if value in row]


@functools.cache
def breakdown_type(group: type) -> type:
    """The ``breakdown`` object of a section whose groups are ``group`` (declared once here; one
    class per group type)."""
    return dataclasses.make_dataclass(f"{group.__name__.removesuffix('Group')}Breakdown", [
        ("dimension", str, declare("the dimension broken down by")),
        ("groups", tuple[group, ...], declare("the largest groups by users, largest first; then (other), merging "
                                              "the rest")),
        ("other_values", int, declare("distinct values merged into (other)", COUNT)),
    ], frozen=True)


GROUP_VALUE = "the dimension's value; (none): users without one; (other): the smaller groups merged"
FILTERS = "the filters applied, by dimension: the users counted have one of these values"
