"""The SDK on the real broker: what AgentClient sends arrives signed, keyed and in order; bench_sdk."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Consumer

from agenttrail.config import Settings
from agenttrail.crypto import SigningKey
from agenttrail.kafka.admin import TopicSpec, ensure_topics
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.topics import events_topic
from agenttrail.producers.bench import bench_sdk
from agenttrail.producers.client import AgentClient
from agenttrail.schemas.envelope import decode_envelope, verify_envelope


def test_client_events_arrive_signed_and_in_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    tenant = f"sdk{uuid.uuid4().hex[:8]}"
    topic = events_topic(tenant)
    ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=4)])
    key = SigningKey.generate()
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap)
    with AgentClient(settings, tenant, "agent-1", None, key) as client:
        for _ in range(3):
            with client.session() as s:
                for i in range(50):
                    s.llm_call("claude-sonnet-4", 100 + i, 10, 0.001, 300.0)
        assert client.flush(30) == 0
        assert client.producer.stats.acknowledged == 3 * 52  # type: ignore[attr-defined]
    consumer = Consumer(consumer_config(kafka_bootstrap, f"sdk-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    seqs: dict[str, list[int]] = {}
    try:
        while sum(map(len, seqs.values())) < 3 * 52:
            msg = consumer.poll(10)
            assert msg is not None, "timed out"
            env = decode_envelope(msg.value())
            assert msg.key() == env.session_id.encode() and env.tenant_id == tenant
            assert verify_envelope(env, key.public_key)
            seqs.setdefault(env.session_id, []).append(env.seq)
    finally:
        consumer.close()
    assert sorted(len(v) for v in seqs.values()) == [52, 52, 52]
    assert all(v == list(range(52)) for v in seqs.values())


def test_bench_sdk_reports_acked_rate_beside_sign_rate(kafka_bootstrap: str) -> None:
    result = bench_sdk(seconds=1.5, bootstrap=kafka_bootstrap, tenant_id=f"bench{uuid.uuid4().hex[:6]}")
    assert result["ed25519_sign_per_s"] > 0 and result["signed_encoded_events_per_s"] > 0
    assert result["acked"] == result["sent"] > 0 and result["failed"] == 0
    assert 0 < result["signed_acked_events_per_s"] <= result["ed25519_sign_per_s"]
