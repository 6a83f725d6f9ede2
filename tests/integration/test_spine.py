"""The spine: a real broker, 10,000 messages round-trip in order, and a Faust app with a table."""

from __future__ import annotations

import asyncio
import uuid

from confluent_kafka import Consumer, Producer

from agenttrail.kafka.admin import TopicSpec, ensure_topics, list_topics
from agenttrail.kafka.clients import consumer_config, producer_config

N = 10_000


def test_round_trip_10k_in_order(kafka_bootstrap: str) -> None:
    topic = f"spine-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=1)]) == [topic]
    assert ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=1)]) == []  # idempotent
    assert list_topics(kafka_bootstrap)[topic] == 1

    producer = Producer(producer_config(kafka_bootstrap))
    acked: list[int] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, err
        acked.append(int(msg.value()))  # type: ignore[attr-defined]

    for i in range(N):
        producer.produce(topic, key=b"k", value=str(i).encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert acked == list(range(N))

    consumer = Consumer(consumer_config(kafka_bootstrap, f"g-{topic}"))
    consumer.subscribe([topic])
    seen: list[int] = []
    try:
        while len(seen) < N:
            msg = consumer.poll(5)
            assert msg is not None, f"timed out after {len(seen)} messages"
            assert msg.error() is None, msg.error()
            seen.append(int(msg.value()))
    finally:
        consumer.close()
    assert seen == list(range(N))


def test_faust_agent_with_changelog_table(kafka_bootstrap: str, tmp_path: object) -> None:
    """A minimal Faust app (agent + changelog-backed table) consumes the same broker."""
    import faust

    topic_name = f"faust-in-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, partitions=4)])
    producer = Producer(producer_config(kafka_bootstrap))
    n = 2000
    for i in range(n):
        producer.produce(topic_name, key=f"s{i % 10}".encode(), value=str(i).encode())
    assert producer.flush(30) == 0

    app = faust.App(
        f"spine-{uuid.uuid4().hex[:6]}", broker=f"kafka://{kafka_bootstrap}", store="memory://",
        topic_partitions=4, topic_replication_factor=1, web_enabled=False,
        datadir=str(tmp_path), consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw",
                       key_serializer="raw")
    counts = app.Table("counts", default=int, partitions=4)
    done = asyncio.Event()
    total = {"n": 0}

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for key, _value in stream.items():
            counts[key.decode()] += 1
            total["n"] += 1
            if total["n"] >= n:
                done.set()

    async def run() -> None:
        worker_task = asyncio.ensure_future(app.start())
        try:
            await asyncio.wait_for(done.wait(), timeout=120)
        finally:
            await app.stop()
            worker_task.cancel()

    asyncio.run(run())
    assert total["n"] == n
    assert sum(counts.values()) == n
    assert {k: counts[k] for k in counts} == {f"s{i}": n // 10 for i in range(10)}
    topics = list_topics(kafka_bootstrap)
    assert any(t.endswith("counts-changelog") for t in topics), "table changelog topic exists"
