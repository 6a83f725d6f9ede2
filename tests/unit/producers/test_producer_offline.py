"""EventProducer with no broker behind it: ordering of queue + spool, and what close() keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenttrail.errors import BrokerError
from agenttrail.kafka.broker import free_port
from agenttrail.producers.producer import EventProducer
from agenttrail.producers.spool import Spool, SpoolRecord

TOPIC = "agenttrail.acme.events"


def _unreachable() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


def test_overflow_goes_to_spool_and_close_keeps_everything_in_order(tmp_path: Path) -> None:
    path = tmp_path / "p.spool"
    producer = EventProducer(_unreachable(), spool_path=path, queue_max_messages=5)
    for i in range(40):
        producer.send(TOPIC, f"s{i % 2}".encode(), str(i).encode())
    stats = producer.stats
    assert stats.sent == 40 and stats.spool_pending == 35 and stats.acknowledged == 0  # 5 fit in the queue
    assert producer.close(timeout=0.5) == 40
    assert [int(r.value) for r in Spool(path).unread()] == list(range(40))
    with pytest.raises(BrokerError):
        producer.send(TOPIC, b"k", b"after close")


def test_next_producer_hands_spool_back_first(tmp_path: Path) -> None:
    path = tmp_path / "p.spool"
    spool = Spool(path)
    for i in range(10):
        spool.append(SpoolRecord(TOPIC, b"s", str(i).encode()))
    spool.close()
    producer = EventProducer(_unreachable(), spool_path=path, queue_max_messages=4)
    assert producer.stats.spool_pending == 10
    for i in range(10, 15):  # new events queue up behind the spooled ones
        producer.send(TOPIC, b"s", str(i).encode())
    assert producer.stats.spool_pending == 11  # 4 handed to librdkafka, oldest first
    assert producer.close(timeout=0.5) == 15
    assert [int(r.value) for r in Spool(path).unread()] == list(range(15))


def test_without_spool_a_full_queue_is_an_error(tmp_path: Path) -> None:
    producer = EventProducer(_unreachable(), queue_max_messages=2)
    producer.send(TOPIC, b"k", b"1")
    producer.send(TOPIC, b"k", b"2")
    with pytest.raises(BrokerError):
        producer.send(TOPIC, b"k", b"3")
    assert producer.stats.sent == 2
    producer.close(timeout=0.2)
    assert producer.stats.failed == 2  # reported, not silently dropped
