"""``filter=`` and ``breakdown=`` on the sections computed from the identified events.

(docs/api.md#filters-and-breakdowns)

``filter=<dimension>:<value>`` may be repeated: the same dimension repeated is OR, different
dimensions AND; ``(none)`` selects the users without a value. ``breakdown=<dimension>`` splits the
section by the dimension's values. Dimensions are configured (``dimensions:``), each naming the
event property it reads; values travel to the events backends as data, never as query text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ..analysis.breakdowns import Groups, Selection, breakdown_type, rank_groups
from ..config import DimensionConfig
from .params import InvalidParameter, Param

MAX_FILTERS = 10
FILTER_FORM = "give filter as <dimension>:<value>, e.g. filter=team:payments"


class Drilldown:
    """The drill-down parameters of a section and what they select."""

    def __init__(self, dimensions: Sequence[DimensionConfig], max_groups: int) -> None:
        self.properties = {dimension.name: dimension.property for dimension in dimensions}
        self.max_groups = max_groups
        names = ", ".join(self.properties) or "none (configure dimensions:)"
        # The schemas admit exactly the configured dimensions (none: no value at all).
        either = "|".join(_regex_literal(name) for name in self.properties)
        self.query = {
            "filter": Param(None, None, self._filter, repeatable=True,
                            description=f"<dimension>:<value>, repeatable (same dimension: OR; different "
                                        f"dimensions: AND; (none): no value); dimensions: {names}",
                            schema={"pattern": f"^(?:{either}):.+$"} if either else {"enum": []}),
            "breakdown": Param(None, None, self._dimension, schema={"enum": list(self.properties)},
                               description=f"split the section by a dimension's values; dimensions: {names}"),
        }

    def check(self, params: dict[str, Any]) -> None:
        if len(params.get("filter", ())) > MAX_FILTERS:
            raise InvalidParameter("filter", f"at most {MAX_FILTERS} filters (got {len(params['filter'])})")

    def selection(self, params: dict[str, Any]) -> Selection:
        """The users the parameters keep, and the property to break them down by."""
        breakdown = params.get("breakdown")
        filters = self.filters(params) or {}
        return Selection(tuple((self.properties[name], values) for name, values in filters.items()),
                         None if breakdown is None else self.properties[breakdown])

    @staticmethod
    def filters(params: dict[str, Any]) -> dict[str, tuple[str, ...]] | None:
        """The filters by dimension, values in the order given, as the body echoes them (None without)."""
        grouped: dict[str, tuple[str, ...]] = {}
        for name, value in params.get("filter", ()):
            if value not in grouped.get(name, ()):
                grouped[name] = (*grouped.get(name, ()), value)
        return grouped or None

    def groups(self, values: Sequence[str], counted: Sequence[int]) -> Groups:
        """The groups a breakdown lists, by the users the section counts per value."""
        return rank_groups(values, counted, self.max_groups)

    def breakdown(self, params: dict[str, Any], values: Sequence[str], counted: Sequence[int], group: type,
                  report: Callable[[tuple[int, ...]], Any]) -> Any:
        """A section's ``breakdown``: for each group listed, ``group(value, users, report(value codes))``
        (``counted``: the users the section counts per value code)."""
        groups = self.groups(values, counted)
        return breakdown_type(group)(params["breakdown"], tuple(
            group(label, int(sum(counted[code] for code in codes)), report(codes))
            for label, codes in zip(groups.labels, groups.members)), groups.other_values)

    def _filter(self, text: str) -> tuple[str, str]:
        name, colon, value = text.partition(":")
        if not colon or not name or not value:
            raise ValueError(f"{FILTER_FORM} (got {text[:64]!r})")
        return self._dimension(name), value

    def _dimension(self, name: str) -> str:
        if name not in self.properties:
            configured = ", ".join(self.properties) or "none are configured (dimensions: in the configuration)"
            raise ValueError(f"{name[:64]!r} is not a dimension; dimensions: {configured}")
        return name


def _regex_literal(text: str) -> str:
    """``text`` matched literally by an OpenAPI (ECMA-262) pattern: only its syntax characters escaped."""
    return re.sub(r"[\\^$.*+?()[\]{}|/]", lambda match: "\\" + match.group(), text)
