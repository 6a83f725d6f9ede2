"""ClickHouse rows read back as the exact ledger records; tampering with rows in chDB is detected
by verify_tenant_from_store and located by the ledger-vs-ClickHouse comparison."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from agenttrail.audit import verify_tenant_from_store
from agenttrail.audit.bench import Dataset, synthetic_dataset
from agenttrail.audit.compare import compare_records
from agenttrail.audit.sources import records_from_store
from agenttrail.sinks.clickhouse.rows import CHECKPOINT_COLUMNS, EVENT_COLUMNS, checkpoint_row, event_row
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore

TENANT = "chx"


class View:
    """The registry view as the API hands it over: agent keys and service keys."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def agent_key(self, tenant_id: str, key_id: str, at: int, agent_id: str | None = None) -> object:
        return self.data.keys.agent_key(tenant_id, key_id, at, agent_id)

    def service_public_keys(self) -> list[object]:
        key = self.data.service_key

        class K:
            service, public_key = key.name, key.public_key

        return [K()]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(400, tenant_id=TENANT, sessions=4, agents=2)


@pytest.fixture()
def store(chdb_url: str, data: Dataset) -> Iterator[ClickHouseStore]:
    store = open_store(chdb_url, database=f"audit_{uuid.uuid4().hex[:12]}")
    store.insert("events", [event_row(r, r.source_partition, i, 36_500) for i, r in enumerate(data.records)],
                 EVENT_COLUMNS)
    note = data.checkpoint.to_text().encode()
    store.insert("checkpoints", [checkpoint_row(TENANT.encode(), note, 0, 0, 0)], CHECKPOINT_COLUMNS)
    yield store
    store.close()


def test_rows_read_back_as_the_records(store: ClickHouseStore, data: Dataset) -> None:
    loaded = records_from_store(store, TENANT)
    assert sorted(loaded.records, key=lambda r: (r.envelope.session_id, r.chain_index)) == \
        sorted(data.records, key=lambda r: (r.envelope.session_id, r.chain_index))
    assert compare_records(data.records, loaded.records) == (400, [])


def test_clean_store_verifies(store: ClickHouseStore, data: Dataset) -> None:
    report = verify_tenant_from_store(store, View(data), TENANT)
    assert report.ok, report.failures
    assert (report.events, report.signatures_checked, report.checkpoints_checked) == (400, 400, 1)
    assert verify_tenant_from_store(store, View(data), TENANT, "s-00001").events == 100


def test_payload_byte_changed_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    store.command("ALTER TABLE events UPDATE payload = replaceOne(payload, 'x', 'y') "
                  "WHERE session_id = 's-00002' AND chain_index = 7 SETTINGS mutations_sync = 1")
    report = verify_tenant_from_store(store, View(data), TENANT)
    [f] = report.failures
    assert (f.check, f.session_id, f.chain_index) == ("payload", "s-00002", 7)
    _, diff = compare_records(data.records, records_from_store(store, TENANT).records)
    [d] = diff
    assert (d.kind, d.session_id, d.chain_index) == ("row_differs", "s-00002", 7) and "payload" in d.detail


def test_deleted_row_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    store.command("DELETE FROM events WHERE session_id = 's-00003' AND chain_index = 50")
    report = verify_tenant_from_store(store, View(data), TENANT)
    [f] = report.failures
    assert (f.check, f.kind, f.session_id, f.chain_index) == ("chain", "index_gap", "s-00003", 51)
    _, diff = compare_records(data.records, records_from_store(store, TENANT).records)
    assert [(d.kind, d.chain_index) for d in diff] == [("missing_in_clickhouse", 50)]


def test_changed_timestamp_and_swapped_order_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    store.command("ALTER TABLE events UPDATE type = 'error' WHERE session_id = 's-00000' AND chain_index = 3 "
                  "SETTINGS mutations_sync = 1")
    rewrite(store, "s-00001", 9, ts=lambda ts: ts + timedelta(microseconds=1))  # ts is a key column
    report = verify_tenant_from_store(store, View(data), TENANT)
    located = {(f.check, f.session_id, f.chain_index) for f in report.failures}
    assert {("chain", "s-00000", 3), ("signature", "s-00000", 3), ("chain", "s-00001", 9),
            ("signature", "s-00001", 9)} == located


def rewrite(store: ClickHouseStore, session: str, index: int, **changes: object) -> None:
    """Tamper with key columns the way ClickHouse allows it: delete the row, insert the changed copy."""
    where = f"session_id = '{session}' AND chain_index = {index}"
    row = list(store.query_rows(f"SELECT * FROM events WHERE {where}")[0])
    for name, change in changes.items():
        i = EVENT_COLUMNS.index(name)
        row[i] = change(row[i]) if callable(change) else change
    store.command(f"DELETE FROM events WHERE {where}")
    store.insert("events", [tuple(row)], EVENT_COLUMNS)


def test_swapped_rows_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    # chain_index is in the sorting key: swap by re-inserting the two rows with exchanged indexes
    rows = store.query_rows("SELECT * FROM events WHERE session_id = 's-00002' AND chain_index IN (20, 21) "
                            "ORDER BY chain_index")
    store.command("DELETE FROM events WHERE session_id = 's-00002' AND chain_index IN (20, 21)")
    index = EVENT_COLUMNS.index("chain_index")
    swapped = [(*row[:index], 21 - i, *row[index + 1:]) for i, row in enumerate(rows)]
    store.insert("events", swapped, EVENT_COLUMNS)
    report = verify_tenant_from_store(store, View(data), TENANT)
    assert [(f.check, f.session_id, f.chain_index) for f in report.failures] == [("chain", "s-00002", 20)]


def test_forged_row_inserted_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    row = list(store.query_rows("SELECT * FROM events WHERE session_id = 's-00001' AND chain_index = 99")[0])
    row[EVENT_COLUMNS.index("chain_index")] = 100
    row[EVENT_COLUMNS.index("prev_hash")] = row[EVENT_COLUMNS.index("entry_hash")]
    row[EVENT_COLUMNS.index("signature")] = "00" * 64
    store.insert("events", [tuple(row)], EVENT_COLUMNS)
    report = verify_tenant_from_store(store, View(data), TENANT)
    located = {(f.check, f.session_id, f.chain_index) for f in report.failures}
    assert ("signature", "s-00001", 100) in located and ("chain", "s-00001", 100) in located
    _, diff = compare_records(data.records, records_from_store(store, TENANT).records)
    assert [(d.kind, d.session_id, d.chain_index) for d in diff] == [("extra_in_clickhouse", "s-00001", 100)]


def test_replaced_checkpoint_in_clickhouse(store: ClickHouseStore, data: Dataset) -> None:
    forged = data.checkpoint.to_text().replace(data.checkpoint.body().split("\n")[2], "A" * 43 + "=")
    store.command("TRUNCATE TABLE checkpoints")
    store.insert("checkpoints", [checkpoint_row(TENANT.encode(), forged.encode(), 0, 0, 0)], CHECKPOINT_COLUMNS)
    report = verify_tenant_from_store(store, View(data), TENANT)
    assert next((f.check, f.kind) for f in report.failures) == ("checkpoint", "bad_signature")
