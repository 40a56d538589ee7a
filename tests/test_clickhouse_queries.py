"""ClickHouse SQL safety: parameters round-trip any text through the real engine; identifiers and
the events configuration refuse anything that could change a query."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.clickhouse import ChdbEngine
from exporter.analysis.breakdowns import NONE, Selection
from exporter.config import ConfigError, load_config
from exporter.events.clickhouse_queries import EventsTable, Parameter, segment_activity_query, user_counts_query
from exporter.events.clickhouse_source import events_table
from exporter.identifiers import quote_identifier
from exporter.service import AnalyticsService
from tests.fakes.events import PropertyEvent
from tests.tools import require_chdb


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse-parameters"))


# Any valid text (no lone surrogates: no client can send one), with the characters that matter to
# ClickHouse's parsers over-represented.
valid_characters = st.characters(exclude_categories=("Cs",))
texts = st.text(st.sampled_from("\\'\"`\t\n\r\0;,[]{}()=:% ab\u00e9\u2713") | valid_characters, max_size=20)


@settings(max_examples=25, deadline=None)
@given(values=st.lists(texts, min_size=1, max_size=6))
def test_string_and_array_parameters_arrive_as_the_exact_values(engine, values):
    parameters = {f"v{i}": Parameter.string(value) for i, value in enumerate(values)}
    parameters["all"] = Parameter.strings(values)
    placeholders = ", ".join(f"{{v{i}:String}} AS v{i}" for i in range(len(values)))
    sql = f"SELECT {placeholders}, {{all:Array(String)}} AS all FORMAT JSONEachRow"
    (row,) = [json.loads(line) for line in engine.execute(
        sql, params={name: p.text for name, p in parameters.items()}).splitlines()]
    assert [row[f"v{i}"] for i in range(len(values))] == values
    assert row["all"] == values


def test_numeric_parameters(engine):
    parameters = {"n": Parameter.int64(-(2**40)), "codes": Parameter.uint32s([0, 7, 2**32 - 1])}
    answer = engine.execute("SELECT {n:Int64} AS n, {codes:Array(UInt32)} AS codes FORMAT JSONEachRow",
                            params={name: p.text for name, p in parameters.items()})
    row = json.loads(answer)
    assert int(row["n"]) == -(2**40) and row["codes"] == [0, 7, 2**32 - 1]  # 64-bit: quoted or not, by version


@pytest.mark.parametrize("name", ["events", "_x1", "Events_V2"])
def test_identifiers_are_quoted(name):
    assert quote_identifier(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1events", "a b", "a`b", "ev;DROP", "a.b", "a-b", "événements", "a\nb", None])
def test_anything_else_is_refused(name):
    with pytest.raises(ValueError, match="not a ClickHouse name"):
        quote_identifier(name)


def test_nested_columns_allow_one_dot():
    assert quote_identifier("meta.key", nested=True) == "`meta.key`"
    for name in ("a.b.c", ".a", "a.", "a.`b`"):
        with pytest.raises(ValueError):
            quote_identifier(name, nested=True)


def test_a_mapped_table_writes_only_quoted_identifiers_into_sql():
    table = EventsTable.mapped("analytics", "product_events", user_id="uid", event="name", timestamp="ts")
    query = segment_activity_query(table, now=1_780_000_000, meaningful_events=["x'); DROP TABLE t; --"],
                                   feature_events={"deploy": "Deploy"})
    assert "`analytics`.`product_events`" in query.sql and "src.`uid`" in query.sql and "src.`ts`" in query.sql
    assert "DROP" not in query.sql and "deploy" not in query.sql and "1780000000" not in query.sql
    assert query.parameters["meaningful_events"].text == "['x\\'); DROP TABLE t; --']"
    with pytest.raises(ValueError):
        EventsTable.mapped("analytics", "events; DROP TABLE x", user_id="uid", event="name", timestamp="ts")


def test_a_selection_writes_only_placeholders_into_sql():
    """Property names and filter values are parameters; the properties column is a checked identifier."""
    table = EventsTable.mapped("analytics", "product_events", user_id="uid", event="name", timestamp="ts",
                               properties="props")
    selection = Selection((("team'); DROP TABLE t; --", ("x' OR 1=1 --", NONE)),), "role")
    query = user_counts_query(table, start=1_779_000_000, end=1_780_000_000, selection=selection)
    assert "src.`props`[{selection_property_0:String}]" in query.sql
    for value in ("DROP", "OR 1=1", "role", "(none)", "1780000000"):
        assert value not in query.sql
    assert query.parameters["selection_property_1"] == Parameter.string("role")
    assert query.parameters["filter_0"].text == "['x\\' OR 1=1 --','(none)']"
    with pytest.raises(ValueError):
        EventsTable.mapped("analytics", "product_events", user_id="uid", event="name", timestamp="ts",
                           properties="props]; DROP TABLE x")


@pytest.mark.parametrize("join_use_nulls", ["0", "1"])
def test_users_without_a_value_are_none_whatever_the_servers_join_setting(engine, join_use_nulls):
    """A server profile may set join_use_nulls (a readonly query cannot unset it): a user missing
    from the values' side of the join is (none) either way."""
    now = 1_780_000_000
    engine.create_events_table("default.teams", [
        PropertyEvent("a", "deploy", now - 10, (("team", "web"),)), PropertyEvent("b", "deploy", now - 10),
        PropertyEvent("c", "deploy", now - 10, (("role", "dev"),))])
    table = EventsTable.mapped("default", "teams", user_id="user_id", event="event", timestamp="timestamp")
    query = user_counts_query(table, start=now - 100, end=now, selection=Selection((("team", ("web", NONE)),), "team"))
    answer = engine.execute(f"{query.sql} FORMAT JSONEachRow", settings={"join_use_nulls": join_use_nulls},
                            params={name: parameter.text for name, parameter in query.parameters.items()})
    counts = query.read([json.loads(line) for line in answer.splitlines()])
    assert counts.by_value == {"web": (1, 1), NONE: (2, 2)}


CLICKHOUSE = {"events.kind": "clickhouse", "events.url": "http://clickhouse:8123"}


@pytest.mark.parametrize("override, fragment", [
    ({"events.database": "default`; DROP DATABASE x"}, "events: 'default`; DROP DATABASE x' is not a ClickHouse name"),
    ({"events.table": "events WHERE 1"}, "is not a ClickHouse name"),
    ({"events.columns.event": "name) OR (1"}, "events.columns: 'name) OR (1' is not a ClickHouse name"),
    ({"events.url": "clickhouse:8123"}, "url must start with http"),
    ({"events.url": "http://dashboard:s3cret@clickhouse:8123"}, "url must not hold a password"),
    ({"events.preset": "plausible_events_v2"}, "needs user_id_property"),
    ({"events.user_id_property": "uid"}, "only used with preset"),
    ({"events.preset": "plausible_events_v2", "events.user_id_property": "uid", "events.columns.event": "n"},
     "columns cannot be set with preset"),
    ({"events.path": "/data/events.jsonl"}, "path is set, but kind is clickhouse"),
    ({"events.query_timeout_seconds": 10}, "must be below metrics.default_scrape_timeout_seconds"),
    ({"events.kind": "graphite"}, "not one of file, clickhouse"),
])
def test_invalid_events_configuration_is_a_clear_error(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config(environ={}, overrides={**CLICKHOUSE, **override})


def test_a_hostile_user_id_property_is_a_value_not_sql():
    config = load_config(environ={}, overrides={**CLICKHOUSE, "events.preset": "plausible_events_v2",
                                                "events.user_id_property": "id')] OR 1=1 --"})
    table = events_table(config.events)
    assert "OR 1=1" not in table.user_id and "{user_id_property:String}" in table.user_id
    assert table.parameters["user_id_property"] == Parameter.string("id')] OR 1=1 --")


def test_without_a_url_the_clickhouse_source_is_disabled_naming_the_setting():
    service = AnalyticsService(load_config(environ={}, overrides={"events.kind": "clickhouse"}))
    assert service.events is None
    assert service.health.sources["events"].disabled_reason == "not configured: set events.url"
