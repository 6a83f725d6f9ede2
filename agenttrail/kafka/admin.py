"""Topic administration: idempotent create, config changes, describe."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from agenttrail.errors import BrokerError

logger = logging.getLogger(__name__)

TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication: int = 1


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], admin: AdminClient | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Existing ones are kept."""
    client = admin or admin_client(bootstrap)
    wanted = list(specs)
    if not wanted:
        return []
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config)
           for s in wanted]
    created: list[str] = []
    for name, future in client.create_topics(new, operation_timeout=TIMEOUT_S).items():
        try:
            future.result(timeout=TIMEOUT_S)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                continue
            raise BrokerError(f"cannot create topic {name}: {err.str()}") from None
    if created:
        logger.info("created topics %s", ", ".join(created))
    return created


def alter_topic_config(bootstrap: str, topic: str, config: dict[str, str],
                       admin: AdminClient | None = None) -> None:
    """Set (incrementally) configuration entries on a topic, e.g. retention.ms."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    client = admin or admin_client(bootstrap)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    for future in client.incremental_alter_configs([resource]).values():
        try:
            future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerError(f"cannot change config of {topic}: {exc.args[0].str()}") from None


def topic_config(bootstrap: str, topic: str, admin: AdminClient | None = None) -> dict[str, str]:
    client = admin or admin_client(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    for future in client.describe_configs([resource]).values():
        try:
            entries = future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerError(f"cannot describe {topic}: {exc.args[0].str()}") from None
        return {k: v.value for k, v in entries.items()}
    return {}


def list_topics(bootstrap: str, admin: AdminClient | None = None) -> dict[str, int]:
    """Topic name -> partition count."""
    client = admin or admin_client(bootstrap)
    try:
        md = client.list_topics(timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str()}") from None
    return {name: len(t.partitions) for name, t in md.topics.items()}


_COORDINATOR_BUSY = frozenset({"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE"})


def committed_offsets(consumer: object, parts: list[object], timeout: float = TIMEOUT_S) -> list[object]:
    """`consumer.committed(parts)`, waiting out a group coordinator that is still loading or moving
    (a fresh broker answers NOT_COORDINATOR for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.committed(parts, timeout=min(10.0, timeout))  # type: ignore[attr-defined]
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() not in _COORDINATOR_BUSY or time.monotonic() >= deadline:
                raise BrokerError(f"cannot read committed offsets: {err.str()}") from None
            time.sleep(0.3)


def group_lag(bootstrap: str, group_id: str, topics: Iterable[str]) -> int:
    """Messages in ``topics`` not yet committed by consumer group ``group_id`` (0 when caught up)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False})
    try:
        md = consumer.list_topics(timeout=TIMEOUT_S)
        parts = [TopicPartition(t, p) for t in topics if t in md.topics for p in md.topics[t].partitions]
        if not parts:
            return 0
        lag = 0
        for tp in committed_offsets(consumer, parts):
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=TIMEOUT_S)
            lag += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return lag
    finally:
        consumer.close()


def system_topic_specs(partitions: int, retention_days: int) -> list[TopicSpec]:
    """The shared topics every process may write: dead letters, checkpoints, embeddings."""
    from agenttrail.kafka.topics import (
        CHAIN_SNAPSHOTS_TOPIC,
        CHECKPOINTER_STATE_TOPIC,
        CHECKPOINTS_TOPIC,
        DLQ_TOPIC,
        EMBEDDINGS_TOPIC,
    )

    retention = str(retention_days * 86_400_000)
    snapshots = {"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1",
                 "max.message.bytes": str(8 * 1024 * 1024)}
    return [
        TopicSpec(DLQ_TOPIC, partitions, {"retention.ms": retention}),
        TopicSpec(CHECKPOINTS_TOPIC, partitions, {"retention.ms": "-1"}),  # signed history: kept
        TopicSpec(EMBEDDINGS_TOPIC, partitions, {"retention.ms": retention}),
        # Caches of the chain state and of the checkpointer's heads: only the newest snapshot per key matters.
        TopicSpec(CHAIN_SNAPSHOTS_TOPIC, partitions, dict(snapshots)),
        TopicSpec(CHECKPOINTER_STATE_TOPIC, partitions, dict(snapshots)),
    ]
