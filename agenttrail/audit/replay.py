"""`agenttrail audit replay`: re-read a tenant's raw events topic from offset 0, re-run verify and
chain with the pipeline's own pure code (`verify_events`, `SessionTable.chain`), rebuild the ClickHouse projection
into a fresh database with the same schema, and diff it row by row with the live table (and with
the ledger topic). LanceDB is not rebuilt (embeddings are not part of the signed trail).

Caveats: verification uses today's registry and clock, so an event of an agent revoked since, or
an event now older than the tenant's retention, is rejected by the replay although it was chained
at the time; such rows show up as `missing_in_replay` differences, never silently.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agenttrail.audit.compare import compare_records
from agenttrail.audit.report import AuditReport
from agenttrail.audit.sources import Message, load_from_kafka, read_topic, records_from_store
from agenttrail.kafka.topics import events_topic, validate_tenant_id
from agenttrail.processors.sequencer import Chained, SessionTable
from agenttrail.processors.verify import RegistryLike, VerifyPolicy, verify_events
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.clickhouse.rows import EVENT_COLUMNS, event_row
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.store import ClickHouseStore

logger = logging.getLogger(__name__)

INSERT_ROWS = 20_000
VERIFY_BATCH = 1_000  # messages whose signatures are verified at once, as a worker's batch


@dataclass(frozen=True, slots=True)
class Replayed:
    records: list[LedgerRecord]
    rejected: Counter[str] = field(default_factory=Counter)


def replay_messages(tenant_id: str, messages: Iterable[Message], registry: RegistryLike, policy: VerifyPolicy,
                    now_micros: int) -> Replayed:
    """Verify and chain raw messages exactly as the chain worker does: one SessionTable per
    partition, messages in offset order, the signatures of each batch verified at once. Pure given
    the registry."""
    tables: dict[int, SessionTable] = {}
    records: list[LedgerRecord] = []
    rejected: Counter[str] = Counter()
    ordered = sorted(messages, key=lambda m: (m[0], m[1]))
    for start in range(0, len(ordered), VERIFY_BATCH):
        batch = ordered[start:start + VERIFY_BATCH]
        answers = verify_events([(value, key) for _, _, key, value, _ in batch], [tenant_id] * len(batch),
                                registry, policy, now_micros)
        for (partition, offset, _, _, _), answer in zip(batch, answers, strict=True):
            outcome = tables.setdefault(partition, SessionTable()).chain(answer, partition, offset)
            if isinstance(outcome, Chained):
                records.append(outcome.record)
            else:
                rejected[outcome.reason] += 1
    return Replayed(records, rejected)


def rebuild_projection(store: ClickHouseStore, records: list[LedgerRecord], retention_days: int) -> int:
    """Insert the replayed records into `store`'s events table with the sink's own row mapping."""
    rows = [event_row(rec, rec.source_partition, 0, retention_days) for rec in records]
    for start in range(0, len(rows), INSERT_ROWS):
        store.insert("events", rows[start:start + INSERT_ROWS], EVENT_COLUMNS)
    return len(rows)


def replay_database_name(now: float | None = None) -> str:
    return f"replay_{int((now or time.time()) * 1000)}"


def replay_tenant(
    bootstrap: str,
    clickhouse_url: str,
    registry: RegistryLike,
    tenant_id: str,
    policy: VerifyPolicy,
    *,
    live_database: str = "agenttrail",
    retention_days: int = 36_500,
    keep: bool = False,
    compare_ledger: bool = True,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Replay the tenant and diff: the rebuilt table vs the live table (and vs the ledger topic)."""
    validate_tenant_id(tenant_id)
    messages = read_topic(bootstrap, events_topic(tenant_id), progress=progress)
    replayed = replay_messages(tenant_id, messages, registry, policy, time.time_ns() // 1000)
    database = replay_database_name()
    fresh = open_store(clickhouse_url, database=database)
    try:
        rebuild_projection(fresh, replayed.records, retention_days)
        rebuilt = records_from_store(fresh, tenant_id)
    finally:
        if not keep:
            fresh.command(f"DROP DATABASE IF EXISTS `{database}`")
        fresh.close()
    live_store = ClickHouseStore(clickhouse_url, database=live_database)
    try:
        live = records_from_store(live_store, tenant_id)
    finally:
        live_store.close()
    compared, failures = compare_records(rebuilt.records, live.records, expected_name="replay",
                                         actual_name="clickhouse", check="replay")
    failures = rebuilt.failures + live.failures + failures
    notes = [f"{len(messages)} raw events replayed: {len(replayed.records)} chained, "
             f"{sum(replayed.rejected.values())} rejected"
             + (f" ({', '.join(f'{k} {v}' for k, v in sorted(replayed.rejected.items()))})"
                if replayed.rejected else ""),
             f"rebuilt into ClickHouse database {database}" + (" (kept)" if keep else " (dropped after the diff)"),
             "LanceDB projection not rebuilt"]
    if compare_ledger:
        ledger = load_from_kafka(bootstrap, tenant_id)
        n, diff = compare_records(replayed.records, ledger.records, expected_name="replay", actual_name="ledger",
                                  check="replay")
        compared += n
        failures += ledger.failures + diff
    sessions = {r.envelope.session_id for r in replayed.records}
    return AuditReport(tenant_id=tenant_id, source="replay", sessions=len(sessions), events=len(replayed.records),
                       rows_compared=compared, failures=tuple(failures), notes=tuple(notes))

