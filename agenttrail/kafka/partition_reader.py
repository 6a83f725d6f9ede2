"""Read partitions of any topic from a start offset to their current end, committed records only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

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
    out: dict[Part, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in parts}
    for msg in iter_partitions(bootstrap, parts, starts, group=group, timeout=timeout):
        out[(msg.topic(), msg.partition())].append((msg.key(), msg.value()))
    return out


def iter_partitions(bootstrap: str, parts: list[Part], starts: dict[Part, int] | None = None, *,
                    group: str = "agenttrail-chain-rebuild", timeout: float = REBUILD_TIMEOUT_S,
                    below_end: bool = False, progress: Callable[[int], None] | None = None) -> Iterator[Message]:
    """The records `read_partitions` reads, as the consumer delivers them (offset order within a
    partition; offsets and headers kept), without holding them.

    The last batch may bring records written after the read began; ``below_end`` leaves those out,
    so what is read is exactly what the partitions held at the start. ``progress(n)`` is called
    after each non-empty batch with its size."""
    starts = starts or {}
    if not parts:
        return
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
            return
        consumer.assign([TopicPartition(t, p, starts.get((t, p), OFFSET_BEGINNING)) for t, p in ends])
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            for msg in batch:
                err = msg.error()
                if err is None:
                    if not below_end or msg.offset() < ends[(msg.topic(), msg.partition())]:
                        yield msg
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise BrokerError(f"reading {msg.topic()}[{msg.partition()}]: {err.str()}")
            if progress is not None and batch:
                progress(len(batch))
            positions = consumer.position([TopicPartition(t, p) for t, p in pending])
            pending -= {(tp.topic, tp.partition) for tp in positions if tp.offset >= ends[(tp.topic, tp.partition)]}
        if pending:
            raise BrokerError(f"reading {len(pending)} partitions took over {timeout:.0f}s")
    finally:
        consumer.close()
