"""``bench_sdk``: how fast one core signs, signs-and-encodes, and signs-and-gets-acknowledged."""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

from agenttrail.crypto import SigningKey
from agenttrail.producers.client import AgentClient
from agenttrail.producers.producer import EventProducer, MemorySink

logger = logging.getLogger(__name__)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _sign_rate(key: SigningKey, seconds: float) -> float:
    message = os.urandom(200)  # about the size of an envelope's signing bytes
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            key.sign(message)
        n += 200
    return _rate(n, time.perf_counter() - start)


def _event_loop(client: AgentClient, seconds: float) -> tuple[int, float]:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    with client.session() as session:
        while time.perf_counter() < deadline:
            for i in range(100):
                session.llm_call("gpt-4o", 800 + i, 120, 0.0032, 640.0)
            n += 100
    return n + 2, time.perf_counter() - start


def bench_sdk(seconds: float = 3.0, bootstrap: str | None = None, tenant_id: str = "bench",
              create_topic: bool = True, partitions: int = 4) -> dict[str, Any]:
    """Raw Ed25519 sign/s, signed+encoded events/s and, given ``bootstrap``, signed+acknowledged
    events/s (acks=all, idempotent, flush included), all on the calling thread."""
    key = SigningKey.generate()
    phase = seconds / (3 if bootstrap else 2)
    result: dict[str, Any] = {"cpu_cores_used": 1, "seconds_per_phase": round(phase, 2)}
    result["ed25519_sign_per_s"] = _sign_rate(key, phase)
    sink = MemorySink(keep=False)
    offline = AgentClient(None, tenant_id, "bench-agent", None, key, producer=sink)
    n, took = _event_loop(offline, phase)
    result["signed_encoded_events_per_s"] = _rate(n, took)
    if bootstrap:
        from agenttrail.kafka.admin import TopicSpec, ensure_topics
        from agenttrail.kafka.topics import events_topic

        if create_topic:
            ensure_topics(bootstrap, [TopicSpec(events_topic(tenant_id), partitions=partitions)])
        producer = EventProducer(bootstrap)
        client = AgentClient(bootstrap, tenant_id, f"bench-{uuid.uuid4().hex[:6]}", None, key,
                             producer=producer)
        start = time.perf_counter()
        n, _ = _event_loop(client, phase)
        left = producer.close(timeout=60)
        took = time.perf_counter() - start
        stats = producer.stats
        result.update({
            "signed_acked_events_per_s": _rate(stats.acknowledged, took),
            "acked": stats.acknowledged, "sent": n, "failed": stats.failed, "left_in_spool": left,
        })
    result["sign_share_of_event_cost"] = (
        round(result["signed_encoded_events_per_s"] / result["ed25519_sign_per_s"], 2)
        if result["ed25519_sign_per_s"] else None)
    return result
