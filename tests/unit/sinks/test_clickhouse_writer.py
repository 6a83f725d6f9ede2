"""ClickHouseSink: batching policy (fake store), idempotent inserts and crash recovery (real chDB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agenttrail.schemas.ledger import LedgerRecord, encode_ledger
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore, StoreError
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate
from agenttrail.sinks.clickhouse.writer import ClickHouseSink

FOREVER = 36_500
TOPIC = "agenttrail.acme.ledger"


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.inserts: list[tuple[str, int, str]] = []
        self.fail = fail

    def insert(self, table: str, rows: list[Any], columns: Any, settings: dict[str, Any]) -> int:
        if self.fail:
            raise StoreError("boom")
        self.inserts.append((table, len(rows), settings["insert_deduplication_token"]))
        return len(rows)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def records() -> list[LedgerRecord]:
    return list(generate(SyntheticSpec(tenants=("acme",), events=6_000, seed=3)))


def test_batches_cut_by_size_at_aligned_offsets(records: list[LedgerRecord]) -> None:
    store = FakeStore()
    sink = ClickHouseSink(store, batch_rows=1000, max_age_s=60, clock=Clock())  # type: ignore[arg-type]
    committed: dict[tuple[str, int], int] = {}
    for offset in range(250, 2600):
        sink.add_ledger(TOPIC, 1, offset, records[offset])
        if sink.due():
            committed.update(sink.flush())
    assert [tokens for _, _, tokens in store.inserts] == [f"{TOPIC}:1:250-999", f"{TOPIC}:1:1000-1999"]
    assert committed == {(TOPIC, 1): 2000}
    assert sink.pending_rows == 600


def test_batches_cut_by_age_one_insert_per_table(records: list[LedgerRecord]) -> None:
    store, clock = FakeStore(), Clock()
    sink = ClickHouseSink(store, batch_rows=10_000, max_age_s=1.0, clock=clock)  # type: ignore[arg-type]
    sink.add_ledger(TOPIC, 0, 5, records[0])
    clock.now = 0.5
    sink.add_ledger(TOPIC, 2, 7, records[1])
    sink.add("agenttrail.dlq", 0, 3, b"acme", b'{"reason":"malformed"}')
    assert not sink.due()
    clock.now = 1.2
    assert sink.due()
    # partition 0 is due; partition 2 (0.7 s old) rides along in the same insert; the DLQ waits
    assert sink.flush() == {(TOPIC, 0): 6, (TOPIC, 2): 8}
    assert [(t, n) for t, n, _ in store.inserts] == [("events", 2)]
    assert sink.flush(force=True) == {("agenttrail.dlq", 0): 4}
    assert [(t, n) for t, n, _ in store.inserts] == [("events", 2), ("dlq", 1)]


def test_failed_insert_releases_no_offset_and_clears_batch(records: list[LedgerRecord]) -> None:
    store = FakeStore(fail=True)
    sink = ClickHouseSink(store, batch_rows=10, clock=Clock())  # type: ignore[arg-type]
    for offset in range(5):
        sink.add_ledger(TOPIC, 0, offset, records[offset])
    with pytest.raises(StoreError):
        sink.flush(force=True)
    assert sink.pending_rows == 0


def test_routes_topics_and_counts_undecodable(records: list[LedgerRecord]) -> None:
    store = FakeStore()
    sink = ClickHouseSink(store, clock=Clock())  # type: ignore[arg-type]
    sink.add(TOPIC, 0, 0, b"s1", encode_ledger(records[0]))
    sink.add(TOPIC, 0, 1, b"s1", b"\x00garbage")
    dead = {"reason": "bad_signature", "detail": "x", "tenant_topic": "agenttrail.acme.events",
            "partition": 1, "offset": 9, "ts": 1_700_000_000_000_000, "original_b64": "AA=="}
    sink.add("agenttrail.dlq", 0, 3, b"acme", json.dumps(dead).encode())
    sink.add("agenttrail.checkpoints", 0, 4, b"acme", b'{"tree_size": 3, "root_hash": "ab"}', 1000)
    sink.add("agenttrail.other", 0, 4, None, b"")
    assert sink.stats.undecodable == 1
    offsets = sink.flush(force=True)
    assert offsets == {(TOPIC, 0): 2, ("agenttrail.dlq", 0): 4, ("agenttrail.checkpoints", 0): 5}
    assert sorted((t, n) for t, n, _ in store.inserts) == [("checkpoints", 1), ("dlq", 1), ("events", 1)]


# -- against chDB -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(chdb_url: str) -> Iterator[ClickHouseStore]:
    store = open_store(chdb_url, database="writer")
    yield store
    store.close()


@pytest.fixture()
def clean(store: ClickHouseStore) -> ClickHouseStore:
    for table in ("events", "sessions_agg", "dlq", "checkpoints"):
        store.command(f"TRUNCATE TABLE {table}")
    return store


def _run(store: ClickHouseStore, records: list[LedgerRecord], start: int, stop: int, batch_rows: int,
         commit_until: int | None = None, finish: bool = True) -> int:
    """Feed offsets [start, stop); return the last committed offset (the 'next offset to read')."""
    sink = ClickHouseSink(store, batch_rows=batch_rows, max_age_s=1e9, retention_days=FOREVER)
    committed = start
    for offset in range(start, stop):
        sink.add_ledger(TOPIC, 0, offset, records[offset])
        if sink.due():
            done = sink.flush()
            if commit_until is None or done[(TOPIC, 0)] <= commit_until:
                committed = done[(TOPIC, 0)]
    if finish:
        committed = sink.flush(force=True).get((TOPIC, 0), committed)
    return committed


def _keys_ok(store: ClickHouseStore, expected: int) -> None:
    assert store.command("SELECT count() FROM events FINAL") == expected
    dupes = store.command(
        "SELECT count() FROM (SELECT session_id, chain_index FROM events FINAL "
        "GROUP BY tenant_id, session_id, chain_index HAVING count() > 1)"
    )
    assert dupes == 0
    assert store.command("SELECT count() FROM (SELECT DISTINCT ledger_offset FROM events)") == expected


def test_same_offsets_twice_insert_nothing_twice(clean: ClickHouseStore, records: list[LedgerRecord]) -> None:
    _run(clean, records, 0, 4000, batch_rows=1000)
    first = clean.command("SELECT count() FROM events")
    assert first == 4000
    _run(clean, records, 0, 4000, batch_rows=1000)  # a replay of the same ledger offsets
    assert clean.command("SELECT count() FROM events") == first  # dropped at insert (tokens), not FINAL
    _keys_ok(clean, 4000)


def test_crash_mid_batch_then_restart_from_committed(
    clean: ClickHouseStore, records: list[LedgerRecord]
) -> None:
    n = len(records)
    # Run 1 inserts up to 3000 but its commits stop at 2000 (killed before committing), and a
    # kill -9 in the middle of the next insert left half of batch 3000-3999 written.
    committed = _run(clean, records, 0, 3100, batch_rows=1000, commit_until=2000, finish=False)
    assert committed == 2000
    assert clean.command("SELECT count() FROM events") == 3000
    half = ClickHouseSink(clean, batch_rows=10**9, max_age_s=1e9, retention_days=FOREVER)
    for offset in range(3000, 3500):
        half.add_ledger(TOPIC, 0, offset, records[offset])
    half.flush(force=True)
    # Run 2 restarts from the committed offset with different batch boundaries.
    assert _run(clean, records, committed, n, batch_rows=700) == n
    _keys_ok(clean, n)
    sessions = clean.command("SELECT count() FROM v_sessions")
    assert sessions == len({r.envelope.session_id for r in records})
