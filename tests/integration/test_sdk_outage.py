"""Broker down while agents keep producing: every event arrives exactly once and in order.

These tests own a broker of their own (they stop and restart it), separate from the session one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from agenttrail.crypto import SigningKey
from agenttrail.kafka.admin import TopicSpec, ensure_topics
from agenttrail.kafka.broker import LocalBroker, temporary_broker
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.topics import events_topic
from agenttrail.producers.client import AgentClient
from agenttrail.producers.producer import EventProducer
from agenttrail.schemas.envelope import decode_envelope, verify_signature

pytestmark = pytest.mark.kafka

N = 1000


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalBroker]:
    with temporary_broker("agenttrail-outage-") as broker:
        yield broker


def _tenant_topic(bootstrap: str) -> tuple[str, str]:
    tenant = f"out{uuid.uuid4().hex[:8]}"
    topic = events_topic(tenant)
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=4)])
    return tenant, topic


def _consume(bootstrap: str, topic: str, expected: int, idle_timeout: float = 10.0) -> list[bytes]:
    """Everything on ``topic`` (waits for ``expected``, then a little longer for duplicates)."""
    consumer = Consumer(consumer_config(bootstrap, f"check-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        while True:
            msg = consumer.poll(idle_timeout if len(values) < expected else 2.0)
            if msg is None:
                break
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def _check_exactly_once_in_order(values: list[bytes], key: SigningKey, sessions: dict[str, int]) -> None:
    by_session: dict[str, list[int]] = {}
    for value in values:
        env = decode_envelope(value)
        assert verify_signature(env, key.public_key)
        by_session.setdefault(env.session_id, []).append(env.seq)
    assert {s: len(seqs) for s, seqs in by_session.items()} == sessions
    for seqs in by_session.values():
        assert seqs == list(range(len(seqs)))  # in order, no duplicate, no gap


def _produce(client: AgentClient, sessions: int, total: int) -> dict[str, int]:
    """``total`` events over interleaved sessions (start and end included)."""
    opened = [client.session() for _ in range(sessions)]
    for s in opened:
        s.start()
    per_session = total // sessions
    for i in range(per_session - 2):
        for s in opened:
            s.llm_call("gpt-4o", 100 + i, 20, 0.001, 250.0)
    for s in opened:
        s.end()
    return {s.session_id: s.seq for s in opened}


def test_broker_down_1000_events_then_up(own_broker: LocalBroker, tmp_path: Path) -> None:
    bootstrap = own_broker.bootstrap
    tenant, topic = _tenant_topic(bootstrap)
    key = SigningKey.generate()
    own_broker.stop()
    # a small local queue forces most of the outage into the spool file
    producer = EventProducer(bootstrap, spool_path=tmp_path / "agent.spool", queue_max_messages=100)
    client = AgentClient(bootstrap, tenant, "agent-1", None, key, producer=producer)
    sessions = _produce(client, sessions=2, total=N)
    assert sum(sessions.values()) == N
    stats = producer.stats
    assert stats.sent == N and stats.acknowledged == 0
    assert stats.spooled > 0 and stats.spool_pending > 0
    own_broker.start()
    assert producer.close(timeout=90) == 0
    assert producer.stats.acknowledged == N and producer.stats.failed == 0
    assert not (tmp_path / "agent.spool").read_bytes()[8:]  # spool emptied once all was acked
    _check_exactly_once_in_order(_consume(bootstrap, topic, N), key, sessions)


def test_closed_while_down_then_next_run_delivers(own_broker: LocalBroker, tmp_path: Path) -> None:
    bootstrap = own_broker.bootstrap
    tenant, topic = _tenant_topic(bootstrap)
    key = SigningKey.generate()
    spool = tmp_path / "agent.spool"
    own_broker.stop()
    first = EventProducer(bootstrap, spool_path=spool, queue_max_messages=300)
    client = AgentClient(bootstrap, tenant, "agent-1", None, key, producer=first)
    sessions = _produce(client, sessions=1, total=N)
    assert first.close(timeout=1.0) == N  # nothing could be delivered: all of it is on disk
    own_broker.start()
    with EventProducer(bootstrap, spool_path=spool) as second:
        assert second.stats.spool_pending == N
        assert second.flush(90) == 0
        assert second.stats.acknowledged == N
    _check_exactly_once_in_order(_consume(bootstrap, topic, N), key, sessions)
