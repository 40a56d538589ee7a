"""Names the configuration lets into SQL: ClickHouse identifiers, checked and quoted.

The events table's database, table and column names are configured and written into the
ClickHouse queries (values never are: they travel as query parameters). Only plain identifiers
pass, so no configured name can change what a query does.
"""

from __future__ import annotations

import re

# A plain identifier, or ``nested.column`` (the subcolumns of a ClickHouse Nested column, such as
# Plausible's ``meta.key``).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_identifier(name: str, *, nested: bool = False) -> str:
    """``name`` backtick-quoted; ValueError unless it is an identifier (``a.b`` only if ``nested``)."""
    pattern = IDENTIFIER if nested else PLAIN_IDENTIFIER
    if not isinstance(name, str) or not pattern.fullmatch(name):
        nested_note = " (and one . between a nested column and its subcolumn)" if nested else ""
        raise ValueError(f"{name!r} is not a ClickHouse name this service accepts: letters, digits and _, "
                         f"not starting with a digit{nested_note}")
    return f"`{name}`"
