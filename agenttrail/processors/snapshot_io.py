"""The snapshot shell: load the newest snapshots, restore tables, write snapshots.

Loading and writing serve every kind of snapshot (the chain worker's by default, the
checkpointer's with its topic and `RowFormat`); `fold` and `new_snapshot` are the chain worker's.
Pure parts are in `processors.snapshot` (format) and `processors.sequencer` (restore, checked fold).
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agenttrail.config import Settings
from agenttrail.errors import BrokerError
from agenttrail.kafka.admin import ensure_topics, list_topics, system_topic_specs
from agenttrail.kafka.partition_reader import REBUILD_TIMEOUT_S, Part, iter_partitions
from agenttrail.kafka.topics import CHAIN_SNAPSHOTS_TOPIC
from agenttrail.processors.sequencer import SessionTable
from agenttrail.processors.snapshot import CHAIN_ROWS, RowFormat, Snapshot, encode_snapshot, latest_snapshots
from agenttrail.schemas.ledger import decode_ledger

logger = logging.getLogger(__name__)


def load_snapshots(bootstrap: str, sources: list[Part], snapshot_partitions: int, *,
                   topic: str = CHAIN_SNAPSHOTS_TOPIC, rows: RowFormat = CHAIN_ROWS,
                   group: str = "agenttrail-chain-snapshots",
                   timeout: float = REBUILD_TIMEOUT_S) -> dict[Part, Snapshot]:
    """The newest complete snapshot of each partition in ``sources`` (those that have one), from the
    snapshot ``topic`` (a source's snapshots are in its partition number modulo the topic's).
    Streamed: only the newest message of each key is held."""
    if not sources or snapshot_partitions < 1:
        return {}
    parts = sorted({(topic, p % snapshot_partitions) for _, p in sources})
    read = iter_partitions(bootstrap, parts, group=group, timeout=timeout)
    found = latest_snapshots(((msg.key(), msg.value()) for msg in read), rows)
    return {src: found[src] for src in sources if src in found}


def fold(values: list[tuple[bytes | None, bytes | None]], snapshot: Snapshot | None = None) -> SessionTable | None:
    """The state after ``values`` (ledger records in offset order) on top of ``snapshot`` (or from
    nothing). None when a record does not continue the restored state: the snapshot is not to be
    trusted and the caller folds the whole ledger instead."""
    if snapshot is None:
        table = SessionTable()
        table.absorb_all(decode_ledger(value or b"") for _, value in values)
        return table
    table = SessionTable.restore(snapshot.sessions)
    for _, value in values:
        if not table.absorb_checked(decode_ledger(value or b"")):
            return None
    return table


def open_snapshot_topic(bootstrap: str, settings: Settings, topic: str, attempts: int = 40) -> int:
    """Make sure the snapshot topic ``topic`` (one of the system topics) exists; its partition count
    (a just-created topic can list none for a moment). BrokerError when it cannot be made or seen."""
    spec = next(s for s in system_topic_specs(settings.partitions, settings.retention_days) if s.name == topic)
    ensure_topics(bootstrap, [spec])
    for _ in range(attempts):
        count = list_topics(bootstrap).get(spec.name, 0)
        if count:
            return count
        time.sleep(0.25)
    raise BrokerError(f"{spec.name} has no partitions")


def ledger_end(consumer: Consumer, ledger: Part) -> int:
    """The ledger partition's end offset, asked of the broker (not the client's cache)."""
    _, high = consumer.get_watermark_offsets(TopicPartition(*ledger), timeout=10, cached=False)
    return int(high)


def write_snapshots(producer: Producer, snapshots: list[Snapshot], snapshot_partitions: int, *,
                    topic: str = CHAIN_SNAPSHOTS_TOPIC, rows: RowFormat = CHAIN_ROWS,
                    writer: str = "chain worker") -> bool:
    """Write ``snapshots`` in one transaction of the ``writer``'s transactional producer. A failure
    is logged and aborted (snapshots are a cache; the next one comes later); fencing is raised."""
    producer.begin_transaction()
    try:
        for snap in snapshots:
            for key, value in encode_snapshot(snap, rows):
                producer.produce(topic, key=key, value=value, partition=snap.partition % snapshot_partitions)
        producer.commit_transaction(60)
        return True
    except KafkaException as exc:
        err = exc.args[0]
        if err.fatal():
            raise BrokerError(f"{writer} was fenced or hit a fatal error: {err.str()}") from None
        logger.warning("%s snapshot not written (%s); the next one is due later", writer, err.str())
        try:
            producer.abort_transaction(60)
        except KafkaException as abort_exc:
            raise BrokerError(f"cannot abort the snapshot transaction: {abort_exc}") from None
        return False


def new_snapshot(topic: str, partition: int, ledger_offset: int, table: SessionTable, now_micros: int) -> Snapshot:
    return Snapshot(topic, partition, ledger_offset, uuid.uuid4().hex, now_micros, tuple(table.export()))
