"""Read partitions of any topic from a start offset to their current end, committed records only."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agenttrail.errors import BrokerError
from agenttrail.kafka.clients import consumer_config

Part = tuple[str, int]
REBUILD_TIMEOUT_S = 120.0


def read_partitions(bootstrap: str, parts: list[Part], starts: dict[Part, int] | None = None, *,
                    group: str = "agenttrail-chain-rebuild",
                    timeout: float = REBUILD_TIMEOUT_S) -> dict[Part, list[tuple[bytes | None, bytes | None]]]:
    """(key, value) of every committed record of the given partitions, from ``starts`` (default:
    the beginning) to the end they had when the read began, in offset order.

    One consumer reads them all (a worker that takes over many tenants rebuilds in one pass);
    partitions with nothing to read are not even assigned; a topic that does not exist reads empty."""
    starts = starts or {}
    out: dict[Part, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in parts}
    if not parts:
        return out
    consumer = Consumer(consumer_config(bootstrap, group, **{"enable.partition.eof": True}))
    try:
        ends: dict[Part, int] = {}
        known = consumer.list_topics(timeout=30).topics
        for topic, partition in parts:
            if topic not in known:  # e.g. an events topic without a tenant (no ledger yet)
                continue
            for attempt in range(20):  # a just-created topic can be unknown for a moment
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                    break
                except KafkaException as exc:
                    if attempt == 19:
                        raise BrokerError(f"reading {topic}[{partition}]: {exc}") from None
                    time.sleep(0.25)
            if high > max(low, starts.get((topic, partition), 0)):
                ends[(topic, partition)] = high
        if not ends:
            return out
        consumer.assign([TopicPartition(t, p, starts.get((t, p), OFFSET_BEGINNING)) for t, p in ends])
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is None:
                    out[(msg.topic(), msg.partition())].append((msg.key(), msg.value()))
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise BrokerError(f"reading {msg.topic()}[{msg.partition()}]: {err.str()}")
            positions = consumer.position([TopicPartition(t, p) for t, p in pending])
            pending -= {(tp.topic, tp.partition) for tp in positions if tp.offset >= ends[(tp.topic, tp.partition)]}
        if pending:
            raise BrokerError(f"reading {len(pending)} partitions took over {timeout:.0f}s")
        return out
    finally:
        consumer.close()
