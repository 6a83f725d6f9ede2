"""`tenants create` adds the analyst user only when ClickHouse is a server (chDB has no users)."""

from __future__ import annotations

from typing import Any

import pytest

from agenttrail.cli import control
from agenttrail.config import Settings


def test_embedded_store_creates_no_analyst_user() -> None:
    assert control._analyst_user(Settings(clickhouse_url="chdb:///tmp/x"), "acme") == {}


def test_server_url_creates_a_tenant_scoped_user_with_a_one_time_password(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    class FakeStore:
        def close(self) -> None:
            calls.append(("close", ""))

    import agenttrail.sinks.clickhouse.analysts as analysts
    import agenttrail.sinks.clickhouse.schema as schema

    monkeypatch.setattr(schema, "open_store", lambda url: FakeStore())

    def create(store: Any, tenant: str, password: str) -> str:
        calls.append((tenant, password))
        return analysts.analyst_user_name(tenant)

    monkeypatch.setattr(analysts, "create_analyst_user", create)
    row = control._analyst_user(Settings(clickhouse_url="http://ch:8123"), "acme")
    assert row["analyst_user"] == analysts.analyst_user_name("acme")
    password = row["analyst_password (shown once)"]
    assert calls[0] == ("acme", password) and len(password) >= 24 and calls[-1] == ("close", "")
