"""Versioned schema, store behaviour and analyst SQL (syntax checked by the engine's own parser)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from agenttrail.errors import ConfigError, TenantError
from agenttrail.sinks.clickhouse.analysts import (
    analyst_user_name,
    analyst_user_sql,
    create_analyst_user,
    drop_analyst_user_sql,
)
from agenttrail.sinks.clickhouse.schema import (
    Migration,
    SchemaError,
    apply_schema,
    load_migrations,
    split_statements,
)
from agenttrail.sinks.clickhouse.store import ClickHouseStore, StoreError

VIEWS = {"v_tool_usage_hourly", "v_llm_daily", "v_agent_errors", "v_agent_activity", "v_session_summary",
         "v_sessions"}


@pytest.fixture(scope="module")
def store(chdb_url: str) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore(chdb_url, database="schema_a")
    yield store
    store.close()


def test_migrations_are_numbered_and_ordered() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) == list(range(1, len(versions) + 1))


def test_apply_once_then_nothing(store: ClickHouseStore) -> None:
    applied = apply_schema(store)
    assert applied == [m.version for m in load_migrations()]
    assert apply_schema(store) == []
    tables = {name for (name,) in store.query_rows("SHOW TABLES")}
    assert {"events", "sessions_agg", "checkpoints", "dlq", "schema_migrations"} | VIEWS <= tables
    key = store.command(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
    assert key.startswith("tenant_id")
    views_cols = store.query_rows(
        "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'tenant_id'")
    assert {t for (t,) in views_cols} >= VIEWS


def test_changed_migration_is_refused(store: ClickHouseStore) -> None:
    apply_schema(store)
    first = load_migrations()[0]
    with pytest.raises(SchemaError):
        apply_schema(store, [Migration(first.version, first.name, first.sql + "\n-- edited")])


def test_new_migration_is_applied_and_recorded(store: ClickHouseStore) -> None:
    apply_schema(store)
    extra = Migration(900, "extra", "CREATE TABLE IF NOT EXISTS extra (x UInt8) ENGINE = Memory;\n")
    assert apply_schema(store, [*load_migrations(), extra]) == [900]
    assert store.command("SELECT count() FROM schema_migrations FINAL WHERE version = 900") == 1


def test_split_statements_drops_comments() -> None:
    sql = "-- a; comment\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nSELECT 1;\n"
    assert split_statements(sql) == ["CREATE TABLE a (x UInt8) ENGINE = Memory", "SELECT 1"]


def test_bad_urls_and_sql_errors(store: ClickHouseStore) -> None:
    with pytest.raises(ConfigError):
        ClickHouseStore("postgres://x")
    with pytest.raises(ConfigError):
        ClickHouseStore("chdb:///tmp/x", database="bad-name; DROP")
    with pytest.raises(StoreError):
        store.command("SELECT nope FROM nowhere")


def test_analyst_sql_parses_and_is_tenant_scoped(store: ClickHouseStore) -> None:
    digest = hashlib.sha256(b"pw").hexdigest()
    statements = analyst_user_sql("acme-eu", digest, database="agenttrail")
    assert len(statements) == 4
    for statement in [*statements, *drop_analyst_user_sql("acme-eu")]:
        formatted = store.command("SELECT formatQuery({q:String})", {"q": statement})
        assert formatted  # the engine's parser accepted it
    policy = next(s for s in statements if "ROW POLICY" in s)
    assert "tenant_id = 'acme-eu'" in policy and analyst_user_name("acme-eu") in policy
    for table in ("events", "sessions_agg", "dlq", "checkpoints"):
        assert f"`agenttrail`.{table}" in policy
    assert "readonly = 1" in statements[0]


def test_analyst_sql_rejects_injection(store: ClickHouseStore) -> None:
    with pytest.raises(TenantError):
        analyst_user_sql("acme' OR 1=1", "a" * 64)
    with pytest.raises(ConfigError):
        analyst_user_sql("acme", "x' IDENTIFIED BY 'y")
    with pytest.raises(ConfigError):
        create_analyst_user(store, "acme", "pw")  # chDB: no users, no row policies
