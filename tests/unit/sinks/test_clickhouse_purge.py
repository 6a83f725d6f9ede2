"""Retention purge: per tenant, lessons kept, sessions summary rebuilt, dead letters cut."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agenttrail.errors import TenantError
from agenttrail.processors.retention import InvalidCommand, PurgeCommand
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.clickhouse.purge import purge_tenant
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate
from agenttrail.sinks.clickhouse.writer import ClickHouseSink


@pytest.fixture(scope="module")
def records() -> list[LedgerRecord]:
    return list(generate(SyntheticSpec(tenants=("acme", "globex"), events=8_000, seed=5)))


@pytest.fixture(scope="module")
def store(chdb_url: str, records: list[LedgerRecord]) -> Iterator[ClickHouseStore]:
    store = open_store(chdb_url, database="purge")
    sink = ClickHouseSink(store, batch_rows=2_000, retention_days=36_500)
    for offset, rec in enumerate(records):
        sink.add_ledger("agenttrail.x.ledger", 0, offset, rec)
    times = sorted(r.envelope.ts for r in records)
    for offset, ts in enumerate((times[0], times[-1])):
        dead = {"reason": "bad_signature", "tenant_topic": "agenttrail.acme.events", "ts": ts}
        sink.add("agenttrail.dlq", 0, offset, b"acme", json.dumps(dead).encode())
    sink.flush(force=True)
    yield store
    store.close()


def test_purge_one_tenant_keeps_lessons_and_other_tenants(
    store: ClickHouseStore, records: list[LedgerRecord]
) -> None:
    cut = sorted(r.envelope.ts for r in records)[len(records) // 2]
    result = purge_tenant(store, PurgeCommand("acme", cut))

    def survives(r: LedgerRecord) -> bool:
        env = r.envelope
        return env.tenant_id != "acme" or env.ts >= cut or env.type == "lesson"

    kept = [r for r in records if survives(r)]
    assert result.events_deleted == len(records) - len(kept) > 0
    assert store.command("SELECT count() FROM events FINAL") == len(kept)
    lessons = sum(1 for r in records if r.envelope.type == "lesson" and r.envelope.tenant_id == "acme")
    assert store.command(
        "SELECT count() FROM events FINAL WHERE tenant_id = 'acme' AND type = 'lesson'") == lessons
    # The materialized summary now agrees with the surviving events, session by session.
    expected: dict[str, int] = {}
    for r in kept:
        expected[r.envelope.session_id] = expected.get(r.envelope.session_id, 0) + 1
    got = dict(store.query_rows("SELECT session_id, events FROM v_sessions"))
    assert got == expected
    assert result.dlq_deleted == 1
    assert store.command("SELECT count() FROM dlq FINAL") == 1


def test_purge_refuses_bad_tenant_ids(store: ClickHouseStore) -> None:
    with pytest.raises((TenantError, InvalidCommand)):
        purge_tenant(store, PurgeCommand("acme' OR 1=1 --", 0))


def test_purge_command_from_the_checkpoints_topic_deletes_only_its_sessions(
    store: ClickHouseStore, records: list[LedgerRecord]
) -> None:
    """The checkpointer's command names whole sessions: other globex sessions stay whole."""
    globex = [r for r in records if r.envelope.tenant_id == "globex"]
    sessions = sorted({r.envelope.session_id for r in globex})
    doomed = sessions[:2]
    before = store.command("SELECT count() FROM events FINAL WHERE tenant_id = 'globex'")
    command = PurgeCommand("globex", max(r.envelope.ts for r in globex) + 1, ("lesson",), tuple(doomed))
    sink = ClickHouseSink(store, batch_rows=2_000, retention_days=36_500)
    sink.add("agenttrail.checkpoints", 0, 10_000, b"globex", command.to_json())
    sink.flush(force=True)
    assert sink.stats.purges == 1
    gone = sum(1 for r in globex if r.envelope.session_id in doomed and r.envelope.type != "lesson")
    after = store.command("SELECT count() FROM events FINAL WHERE tenant_id = 'globex'")
    assert gone > 0 and after == before - gone
    for sid in sessions[2:]:
        expected = sum(1 for r in globex if r.envelope.session_id == sid)
        got = store.command("SELECT count() FROM events FINAL WHERE tenant_id = 'globex' AND session_id = {s:String}",
                            {"s": sid})
        assert got == expected
