"""Ledger -> embed -> embeddings topic -> LanceDB on the real broker; replaying the topic is idempotent."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from agenttrail.kafka.admin import TopicSpec, ensure_topics
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.processors.embed import decode_embedding, embed_batch, encode_embedding
from agenttrail.processors.embedder import MiniLMEmbedder
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger, encode_ledger
from agenttrail.sinks.lancedb import LanceStore, recall

pytestmark = pytest.mark.kafka

EVENTS = [
    ("message", {"role": "user", "text": "Please book a table for two tonight."}),
    ("error", {"kind": "db", "message": "Postgres connection timed out after 30s"}),
    ("tool_call", {"tool": "sql", "call_id": "c1", "args": {"q": "select 1"}}),  # no text: not embedded
    ("lesson", {"text": "Use connection pooling for the reporting database."}),
    ("tool_result", {"tool": "search", "call_id": "c2", "status": "ok", "output": "3 restaurants found"}),
]


def ledger(tenant: str, n: int, event_type: str, payload: object) -> LedgerRecord:
    body = canonical_json(payload)
    env = Envelope(event_id=f"{tenant}-{n}", tenant_id=tenant, agent_id="a", session_id=f"{tenant}-s",
                   seq=n, ts=1_700_000_000_000_000 + n, type=event_type, payload=body,
                   payload_sha256=hashlib.sha256(body).digest())
    return LedgerRecord(env, n, bytes(32), bytes(32), False, 0, n)


def drain(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(consumer_config(bootstrap, f"g-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    out: list[bytes] = []
    try:
        while len(out) < expected:
            msg = consumer.poll(10)
            assert msg is not None, f"timed out after {len(out)} of {expected} messages"
            assert msg.error() is None, msg.error()
            out.append(msg.value())
    finally:
        consumer.close()
    return out


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for key, value in items:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def test_replaying_embeddings_leaves_one_row_per_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    ledger_topic, embeddings_topic = f"embed-ledger-{suffix}", f"embed-vectors-{suffix}"
    ensure_topics(kafka_bootstrap, [TopicSpec(ledger_topic, partitions=2), TopicSpec(embeddings_topic, partitions=2)])
    records = [ledger(t, i, *ev) for t in ("acme", "beta") for i, ev in enumerate(EVENTS)]
    produce(kafka_bootstrap, ledger_topic,
            [(r.envelope.session_id.encode(), encode_ledger(r)) for r in records])

    # The embed stage: ledger in, embedding records out, keyed by tenant.
    consumed = [decode_ledger(v) for v in drain(kafka_bootstrap, ledger_topic, len(records))]
    embedder = MiniLMEmbedder()
    embedded = embed_batch(consumed, embedder)
    assert len(embedded) == 8  # 2 tenants x 4 text-bearing events
    produce(kafka_bootstrap, embeddings_topic, [(e.tenant_id.encode(), encode_embedding(e)) for e in embedded])

    # The LanceDB sink, run twice over the whole topic (a replay).
    store = LanceStore(str(tmp_path / "lancedb"))
    for _ in range(2):
        values = drain(kafka_bootstrap, embeddings_topic, len(embedded))
        store.upsert([decode_embedding(v) for v in values])
    assert store.count() == 8 and store.count("acme") == 4 and store.count("beta") == 4

    hits = recall(store, embedder, "acme", "database timeout", k=3)
    assert hits[0].event_id == "acme-1" and all(h.tenant_id == "acme" for h in hits)
