"""Helpers for the DLQ, crash and new-tenant pipeline tests (raw producing, DLQ reading, chain checks)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from corpus.build import Identity, World, seeded_key
from pipeline_support import read_all

from agenttrail.control.service import Registry
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.topics import DLQ_TOPIC
from agenttrail.processors.dlq import DlqRecord

Placed = tuple[int, int]  # (partition, offset)


class RawProducer:
    """Produce raw (topic, key, value)s in order, idempotently; remember where each one landed."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer(producer_config(bootstrap, **{"message.max.bytes": 1_100_000}))
        self.placed: dict[int, Placed] = {}
        self.errors: list[str] = []
        self._n = 0

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> int:
        ticket = self._n
        self._n += 1

        def done(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                self.errors.append(err.str())
            else:
                self.placed[ticket] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]

        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=done)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)
        return ticket

    def flush(self, timeout: float = 60) -> None:
        left = self._producer.flush(timeout)
        assert left == 0 and not self.errors, (left, self.errors[:3])


def provision_world(registry: Registry, tag: str, now_fn: object = None) -> World:
    """The corpus world on the real registry: tenants A, B and D (D disabled), five agents."""
    a, b, d = f"dlq-{tag}-a", f"dlq-{tag}-b", f"dlq-{tag}-d"
    for tenant in (a, b, d):
        registry.create_tenant(tenant, 30)

    def register(tenant: str, label: str) -> Identity:
        key = seeded_key(f"{tag}/{label}")
        _, secret = registry.create_registration_key(tenant, ttl_seconds=600, name=label)
        agent_id, _ = registry.register_agent(secret, key.public_key, f"sha256:{tag}-{label}")
        return Identity(tenant, agent_id, key)

    agent, other, revoked, rotated = (register(a, "agent"), register(b, "other"), register(a, "revoked"),
                                      register(a, "rotated"))
    disabled = register(d, "disabled")
    registry.revoke_agent(a, revoked.agent_id, "corpus")
    registry.rotate_agent_key(a, rotated.agent_id, seeded_key(f"{tag}/rotated-new").public_key, grace_seconds=0)
    registry.disable_tenant(d)
    time.sleep(0.01)  # every corpus timestamp is after the rotation's end of grace
    return World(a, agent, other, revoked, rotated, disabled, time.time_ns() // 1000, 30, tag=tag)


def read_dlq(bootstrap: str, topics: Iterable[str], expect: int, timeout: float = 90) -> list[DlqRecord]:
    """Dead letters whose source topic is one of ``topics`` (waits until ``expect`` are there)."""
    wanted = set(topics)
    deadline = time.monotonic() + timeout
    found: list[DlqRecord] = []
    while time.monotonic() < deadline:
        rows = read_all(bootstrap, [DLQ_TOPIC], timeout=30, idle=1.0)
        found = [r for r in (DlqRecord.from_json(v) for *_, v in rows) if r.tenant_topic in wanted]
        if len(found) >= expect:
            break
        time.sleep(1)
    return found


def committed_count(bootstrap: str, topics: Iterable[str]) -> int:
    """Sum of high watermarks (records plus transaction markers): a cheap progress signal."""
    consumer = Consumer(consumer_config(bootstrap, f"probe-{time.time_ns()}"))
    try:
        md = consumer.list_topics(timeout=10)
        total = 0
        for topic in topics:
            if topic not in md.topics:
                continue
            for p in md.topics[topic].partitions:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return total
    finally:
        consumer.close()
