"""Where audited records come from: the ledger topic (read_committed, offset 0 to the high
watermark), the checkpoints topic, or the ClickHouse `events`/`checkpoints` tables.

ClickHouse rows map back to LedgerRecords exactly (the reverse of sinks/clickhouse/rows.py): every
field of the signing bytes is stored (hashes and the signature as hex, ts as DateTime64(6)).
The events table is read without FINAL so that two different physical copies of one chain index
(a forged row beside the real one) are seen, not silently merged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agenttrail.audit.report import AuditFailure
from agenttrail.errors import AgentTrailError, BrokerError
from agenttrail.kafka.admin import list_topics
from agenttrail.kafka.partition_reader import iter_partitions
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, ledger_topic, validate_tenant_id
from agenttrail.processors.checkpoint import Checkpoint, RetentionAnchor, parse_note
from agenttrail.processors.checkpointer_notes import KIND_HEADER
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger
from agenttrail.sinks.clickhouse.store import ClickHouseStore

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 300.0

Message = tuple[int, int, bytes | None, bytes | None, dict[str, bytes]]  # partition, offset, key, value, headers


@dataclass(slots=True)
class Loaded:
    """Records and notes of one tenant, plus what could not be read (as failures)."""

    records: list[LedgerRecord] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    anchors: list[RetentionAnchor] = field(default_factory=list)
    failures: list[AuditFailure] = field(default_factory=list)


# -- Kafka -------------------------------------------------------------------------------------------
def iter_topic(bootstrap: str, topic: str, *, progress: Callable[[int], None] | None = None,
               timeout: float = READ_TIMEOUT_S) -> Iterator[Message]:
    """Every committed message of every partition of `topic`, from the beginning to the high
    watermark at the time of the call (read_committed: aborted transactions are skipped), as read
    (offset order within a partition), through the shared `iter_partitions`. A topic that does not
    exist is an error here (the chain worker's rebuild reads it as empty)."""
    partitions = list_topics(bootstrap).get(topic)
    if partitions is None:
        raise BrokerError(f"topic {topic} does not exist")
    for msg in iter_partitions(bootstrap, [(topic, p) for p in range(partitions)],
                               group=f"agenttrail-audit-{time.time_ns()}", timeout=timeout,
                               below_end=True, progress=progress):
        yield msg.partition(), msg.offset(), msg.key(), msg.value(), dict(msg.headers() or [])


def read_topic(bootstrap: str, topic: str, *, progress: Callable[[int], None] | None = None,
               timeout: float = READ_TIMEOUT_S) -> list[Message]:
    """`iter_topic`, held in a list."""
    return list(iter_topic(bootstrap, topic, progress=progress, timeout=timeout))


def records_from_messages(tenant_id: str, messages: Iterable[Message], loaded: Loaded) -> None:
    for partition, offset, _, value, _ in messages:
        try:
            loaded.records.append(decode_ledger(value or b""))
        except AgentTrailError as exc:
            loaded.failures.append(AuditFailure("source", "undecodable_ledger_record", tenant_id, None, None,
                                                "a ledger record", str(exc), f"partition {partition} offset {offset}"))


def notes_from_values(tenant_id: str, values: Iterable[tuple[str, bytes]], loaded: Loaded) -> None:
    """Checkpoints and anchors of `tenant_id` from (kind, note bytes) in log order; purge commands skipped."""
    for kind, value in values:
        if kind == "purge" or value.lstrip().startswith(b"{"):
            continue
        try:
            note = parse_note(value)
        except AgentTrailError as exc:
            loaded.failures.append(AuditFailure("checkpoint", "malformed_note", tenant_id, None, None,
                                                "a signed checkpoint or anchor", str(exc)))
            continue
        if note.tenant != tenant_id:
            loaded.failures.append(AuditFailure("checkpoint", "wrong_tenant", tenant_id, None, None,
                                                tenant_id, note.tenant, "note filed under another tenant"))
        elif isinstance(note, RetentionAnchor):
            loaded.anchors.append(note)
        else:
            loaded.checkpoints.append(note)


def load_from_kafka(bootstrap: str, tenant_id: str, *, session_id: str | None = None,
                    progress: Callable[[int], None] | None = None) -> Loaded:
    """The tenant's ledger records (optionally one session) and its checkpoints/anchors."""
    validate_tenant_id(tenant_id)
    loaded = Loaded()
    records_from_messages(tenant_id, iter_topic(bootstrap, ledger_topic(tenant_id), progress=progress), loaded)
    if session_id is not None:
        loaded.records = [r for r in loaded.records if r.envelope.session_id == session_id]
    notes = sorted((p, o, k, v, h) for p, o, k, v, h in read_topic(bootstrap, CHECKPOINTS_TOPIC)
                   if k == tenant_id.encode())
    notes_from_values(tenant_id, ((h.get(KIND_HEADER, b"").decode(), v or b"") for _, _, _, v, h in notes),
                      loaded)
    return loaded


# -- ClickHouse --------------------------------------------------------------------------------------
EVENT_SELECT = (
    "SELECT tenant_id, session_id, chain_index, event_id, agent_id, seq, toUnixTimestamp64Micro(ts), type, "
    "payload, payload_sha256, attributes, key_id, signature, prev_hash, entry_hash, seq_gap, "
    "source_partition, source_offset FROM {table} WHERE tenant_id = {{tenant:String}}"
)


def record_from_row(row: tuple[Any, ...]) -> LedgerRecord:
    """The LedgerRecord an `events` row was written from (rows.event_row reversed)."""
    (tenant, session, index, event_id, agent, seq, ts, type_, payload, payload_sha, attrs, key_id,
     signature, prev_hash, entry_hash, seq_gap, src_partition, src_offset) = row
    body = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    env = Envelope(event_id, tenant, agent, session, int(seq), int(ts), type_, body, bytes.fromhex(payload_sha),
                   dict(attrs), key_id, bytes.fromhex(signature))
    return LedgerRecord(env, int(index), bytes.fromhex(prev_hash), bytes.fromhex(entry_hash), bool(seq_gap),
                        int(src_partition), int(src_offset))


def records_from_store(store: ClickHouseStore, tenant_id: str, session_id: str | None = None,
                       table: str = "events", loaded: Loaded | None = None) -> Loaded:
    validate_tenant_id(tenant_id)
    loaded = loaded or Loaded()
    sql = EVENT_SELECT.format(table=table)
    params: dict[str, Any] = {"tenant": tenant_id}
    if session_id is not None:
        sql += " AND session_id = {session:String}"
        params["session"] = session_id
    for row in store.query_rows(sql, params):
        try:
            loaded.records.append(record_from_row(row))
        except (ValueError, TypeError) as exc:
            loaded.failures.append(AuditFailure("source", "unreadable_row", tenant_id, str(row[1]), int(row[2]),
                                                "a row written by the sink", str(exc)))
    return loaded


def notes_from_store(store: ClickHouseStore, tenant_id: str, loaded: Loaded | None = None) -> Loaded:
    loaded = loaded or Loaded()
    rows = store.query_rows(
        "SELECT raw_value FROM checkpoints FINAL WHERE tenant_id = {tenant:String} "
        "ORDER BY kafka_partition, kafka_offset", {"tenant": validate_tenant_id(tenant_id)})
    values = []
    for (raw,) in rows:
        try:
            values.append(("", bytes.fromhex(raw)))
        except ValueError:
            loaded.failures.append(AuditFailure("checkpoint", "malformed_note", tenant_id, None, None,
                                                "hex of the note", str(raw)[:40]))
    notes_from_values(tenant_id, values, loaded)
    return loaded


def load_from_store(store: ClickHouseStore, tenant_id: str, session_id: str | None = None) -> Loaded:
    loaded = records_from_store(store, tenant_id, session_id)
    return notes_from_store(store, tenant_id, loaded)
