"""The audit's Kafka source reads through the shared partition reader, bounded by the end offsets
taken when the read starts (a live topic's later records are left out, so the read ends)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, TopicPartition

from agenttrail.audit import sources
from agenttrail.errors import BrokerError
from agenttrail.kafka import partition_reader

TOPIC = "agenttrail.acme.ledger"
Part = tuple[str, int]


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int | None, value: bytes | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self._where = (topic, partition, offset)
        self._value, self._headers = value, headers

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int | None:
        return self._where[2]

    def key(self) -> bytes:
        return b"acme"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> object:
        if self._where[2] is not None:
            return None
        return SimpleNamespace(code=lambda: KafkaError._PARTITION_EOF, str=lambda: "end of partition")


class FakeBroker:
    """Partitions whose high watermark (what the reader sees at the start) is below what a consume
    delivers: records appended while the read runs."""

    def __init__(self, logs: dict[Part, list[bytes]], high: dict[Part, int]) -> None:
        self.logs, self.high = logs, high
        self.at: dict[Part, int] = {}

    def consumer(self, _config: dict[str, object]) -> FakeBroker:
        return self

    def list_topics(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={t: None for t, _ in self.logs})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, self.high[(tp.topic, tp.partition)]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.at = {(tp.topic, tp.partition): 0 for tp in tps}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch: list[FakeMessage] = []
        for (topic, p), at in self.at.items():
            log = self.logs[(topic, p)]
            batch += [FakeMessage(topic, p, o, log[o], [("kind", b"x")]) for o in range(at, len(log))]
            batch.append(FakeMessage(topic, p, None))
            self.at[(topic, p)] = len(log)
        return batch

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.at[(tp.topic, tp.partition)]) for tp in tps]

    def close(self) -> None:
        pass


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBroker]:
    fake = FakeBroker({(TOPIC, 0): [b"a0", b"a1", b"a2", b"late0", b"late1"], (TOPIC, 1): [b"b0", b"b1"],
                       (TOPIC, 2): []},
                      {(TOPIC, 0): 3, (TOPIC, 1): 2, (TOPIC, 2): 0})
    monkeypatch.setattr(partition_reader, "Consumer", fake.consumer)
    monkeypatch.setattr(sources, "list_topics", lambda _bootstrap: {TOPIC: 3, "other": 1})
    yield fake


def test_the_audit_reads_up_to_the_ends_taken_at_the_start(broker: FakeBroker) -> None:
    ticks: list[int] = []
    got = sources.read_topic("unused", TOPIC, progress=ticks.append)
    assert [(p, o, v) for p, o, _, v, _ in got] == [(0, 0, b"a0"), (0, 1, b"a1"), (0, 2, b"a2"),
                                                    (1, 0, b"b0"), (1, 1, b"b1")]
    assert all(key == b"acme" and headers == {"kind": b"x"} for _, _, key, _, headers in got)
    assert ticks == [9]  # the whole batch, past-the-end records and end-of-partition events included


def test_the_chain_workers_read_still_keeps_what_the_last_batch_brought(broker: FakeBroker) -> None:
    read = partition_reader.read_partitions("unused", [(TOPIC, 0), (TOPIC, 1), (TOPIC, 2), ("gone", 0)])
    assert read == {(TOPIC, 0): [(b"acme", v) for v in (b"a0", b"a1", b"a2", b"late0", b"late1")],
                    (TOPIC, 1): [(b"acme", b"b0"), (b"acme", b"b1")], (TOPIC, 2): [], ("gone", 0): []}


def test_a_missing_topic_is_an_error_for_the_audit(broker: FakeBroker) -> None:
    with pytest.raises(BrokerError, match="does not exist"):
        sources.read_topic("unused", "agenttrail.nobody.ledger")
