"""Batching writer: per-partition batches, inserted whole, offsets released only after the insert.

`ClickHouseSink` knows nothing of Kafka clients: the consumer shell hands it (topic, partition,
offset, key, value) and commits exactly the offsets `flush()` returns. Every insert carries
`insert_deduplication_token = topic:partition:first-last`, so re-inserting the same offset range
is a no-op; batch boundaries are aligned to multiples of `batch_rows` so that a replay after a
restart tends to rebuild the same ranges. Ranges that differ anyway (time-cut batches) are
absorbed by the ReplacingMergeTree key (tenant_id, session_id, chain_index) read with FINAL.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agenttrail.errors import InvalidEvent
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, DLQ_TOPIC, LEDGER_PATTERN
from agenttrail.sinks.clickhouse.rows import (
    CHECKPOINT_COLUMNS,
    DLQ_COLUMNS,
    EVENT_COLUMNS,
    LedgerLike,
    checkpoint_row,
    dlq_row,
    event_row,
)
from agenttrail.sinks.clickhouse.store import ClickHouseStore

logger = logging.getLogger(__name__)

_LEDGER_RE = re.compile(LEDGER_PATTERN)

Partition = tuple[str, int]  # (topic, partition)
Decoder = Callable[[bytes], LedgerLike]


def _default_decoder(data: bytes) -> LedgerLike:
    from agenttrail.schemas.ledger import decode_ledger

    return decode_ledger(data)


@dataclass(slots=True)
class _Batch:
    table: str
    columns: tuple[str, ...]
    first_offset: int
    last_offset: int
    opened_at: float
    rows: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(slots=True)
class SinkStats:
    rows_inserted: int = 0
    batches_inserted: int = 0
    undecodable: int = 0
    purges: int = 0
    insert_seconds: float = 0.0


class ClickHouseSink:
    def __init__(
        self,
        store: ClickHouseStore,
        *,
        batch_rows: int = 10_000,
        max_age_s: float = 1.0,
        retention_days: int | Callable[[str], int] = 90,
        decode: Decoder = _default_decoder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self._store = store
        self._batch_rows = batch_rows
        self._max_age_s = max_age_s
        self._retention: Callable[[str], int] = (
            retention_days if callable(retention_days) else (lambda _tenant, d=retention_days: d)
        )
        self._decode = decode
        self._clock = clock
        self._batches: dict[Partition, _Batch] = {}
        self.stats = SinkStats()

    # -- accumulating ---------------------------------------------------------------------------

    def _batch_for(
        self, topic: str, partition: int, offset: int, table: str, columns: tuple[str, ...]
    ) -> _Batch:
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = _Batch(table, columns, offset, offset, self._clock())
            self._batches[key] = batch
        batch.last_offset = offset
        return batch

    def add_ledger(self, topic: str, partition: int, offset: int, record: LedgerLike) -> None:
        row = event_row(record, partition, offset, self._retention(record.envelope.tenant_id))
        self._batch_for(topic, partition, offset, "events", EVENT_COLUMNS).rows.append(row)

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int = 0,
    ) -> None:
        """Route one Kafka message to its table. Unknown topics are ignored (offset still advances)."""
        if _LEDGER_RE.fullmatch(topic):
            try:
                record = self._decode(value or b"")
            except InvalidEvent as exc:
                # The ledger is written by our own processors: a record we cannot read is a bug
                # upstream, not a reason to stop the sink. Count it, log it, move on.
                self.stats.undecodable += 1
                logger.error("undecodable ledger record %s[%d]@%d: %s", topic, partition, offset, exc)
                self._batch_for(topic, partition, offset, "events", EVENT_COLUMNS)
                return
            self.add_ledger(topic, partition, offset, record)
        elif topic == DLQ_TOPIC:
            batch = self._batch_for(topic, partition, offset, "dlq", DLQ_COLUMNS)
            batch.rows.append(dlq_row(key, value, partition, offset))
        elif topic == CHECKPOINTS_TOPIC:
            if value and value.startswith(b"{") and b'"purge"' in value:
                self._purge(value)
            batch = self._batch_for(topic, partition, offset, "checkpoints", CHECKPOINT_COLUMNS)
            batch.rows.append(checkpoint_row(key, value, partition, offset, timestamp_ms))
        else:
            logger.debug("ignoring message from unexpected topic %s", topic)

    def _purge(self, value: bytes) -> None:
        """Execute a retention purge command (idempotent: a replay deletes nothing more)."""
        from agenttrail.processors.retention import PurgeCommand
        from agenttrail.sinks.clickhouse.purge import purge_tenant

        try:
            command = PurgeCommand.from_json(value)
        except Exception as exc:
            logger.error("unreadable purge command on %s: %s", CHECKPOINTS_TOPIC, exc)
            return
        self.flush(force=True)  # rows already read go in before the delete
        purge_tenant(self._store, command)
        self.stats.purges += 1

    # -- flushing -------------------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return sum(len(b.rows) for b in self._batches.values())

    def _is_due(self, batch: _Batch, now: float) -> bool:
        return (
            len(batch.rows) >= self._batch_rows
            or (batch.last_offset + 1) % self._batch_rows == 0  # aligned cut: replays rebuild it
            or now - batch.opened_at >= self._max_age_s
        )

    def due(self) -> bool:
        now = self._clock()
        return any(self._is_due(b, now) for b in self._batches.values())

    def flush(self, force: bool = False) -> dict[Partition, int]:
        """Insert every due batch (all with `force`); returns {(topic, partition): next offset}.

        Batches of one table go in together as one insert: partitions that are not due yet ride
        along with a due one, so a flush costs one insert per table, not one per partition (each
        insert has a fixed cost of tens of milliseconds in ClickHouse).

        Only the returned offsets may be committed. If an insert fails the exception propagates,
        the failed batch (and every batch not yet inserted in this call) is dropped: the caller
        must rewind those partitions to their committed offsets.
        """
        now = self._clock()
        due_tables = {b.table for b in self._batches.values() if force or self._is_due(b, now)}
        groups: dict[str, list[tuple[Partition, _Batch]]] = {}
        for key, batch in self._batches.items():
            if batch.table in due_tables:
                groups.setdefault(batch.table, []).append((key, batch))
        keys = [key for group in groups.values() for key, _ in group]
        done: dict[Partition, int] = {}
        try:
            for table in sorted(groups):
                self._insert(table, groups[table])
                for key, batch in groups[table]:
                    done[key] = batch.last_offset + 1
                    del self._batches[key]
        finally:
            for key in keys:
                self._batches.pop(key, None)
        return done

    def _insert(self, table: str, batches: list[tuple[Partition, _Batch]]) -> None:
        with_rows = [(key, b) for key, b in batches if b.rows]
        if not with_rows:
            return
        token = ";".join(f"{t}:{p}:{b.first_offset}-{b.last_offset}" for (t, p), b in sorted(with_rows))
        rows = [row for _, b in with_rows for row in b.rows]
        started = time.perf_counter()
        self._store.insert(table, rows, with_rows[0][1].columns, settings={"insert_deduplication_token": token})
        self.stats.insert_seconds += time.perf_counter() - started
        self.stats.rows_inserted += len(rows)
        self.stats.batches_inserted += 1
        logger.debug("inserted %d rows into %s (%s)", len(rows), table, token)

    def discard(self, partitions: list[Partition] | None = None) -> None:
        """Drop pending batches (all, or those of `partitions`) without inserting them."""
        if partitions is None:
            self._batches.clear()
            return
        for key in partitions:
            self._batches.pop(key, None)
