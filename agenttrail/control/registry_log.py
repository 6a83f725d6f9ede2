"""RegistryLog: the registry topic, read and written, folded into a local RegistryView.

A confluent-kafka producer (acks=all, idempotent) writes records to the compacted single-partition
topic ``agenttrail.registry``; a consumer thread (no consumer-group commits: it assigns the
partition and reads from the beginning) applies them to a local RegistryView. ``write`` returns
only after its own records have been applied locally (read-your-writes). The operations on top of
it are in service.py (``Registry``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from agenttrail.control.records import InvalidRecord, Record, decode_record, encode_record
from agenttrail.control.view import RegistryView
from agenttrail.errors import BrokerError
from agenttrail.kafka.admin import TopicSpec, ensure_topics
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.topics import REGISTRY_TOPIC

logger = logging.getLogger(__name__)

TICK_SECONDS = 30.0  # how often the consumer thread calls _tick()


def now_micros() -> int:
    return time.time_ns() // 1000


def registry_topic_spec() -> TopicSpec:
    """One partition so the log order is total; compacted so it stays small."""
    return TopicSpec(REGISTRY_TOPIC, 1, {"cleanup.policy": "compact", "min.insync.replicas": "1"})


class RegistryLog:
    """A live RegistryView of the registry topic, and the producer that writes to it."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._view = RegistryView()
        self._cond = threading.Condition(threading.RLock())
        self._applied = -1  # offset of the last record applied
        self._eof = -1  # high watermark seen at the last end-of-partition
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._failure: str | None = None

    def _tick(self) -> None:
        """Called from the consumer thread every TICK_SECONDS; nothing to do here."""

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Self:
        ensure_topics(self.bootstrap, [registry_topic_spec()])
        self._producer = Producer(producer_config(self.bootstrap, **{"linger.ms": 0}))
        consumer = Consumer(consumer_config(
            self.bootstrap, f"agenttrail-registry-{uuid.uuid4().hex}",
            **{"enable.partition.eof": True, "isolation.level": "read_uncommitted"}))
        consumer.assign([TopicPartition(REGISTRY_TOPIC, 0, OFFSET_BEGINNING)])
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="registry-view",
                                        daemon=True)
        self._thread.start()
        self.sync(timeout)
        return self

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, consumer: Consumer) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_SECONDS
                    self._tick()
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        with self._cond:
                            self._eof = msg.offset()
                            self._cond.notify_all()
                    else:
                        logger.warning("registry consumer: %s", msg.error().str())
                    continue
                self._apply(msg.key(), msg.value(), msg.offset())
        except Exception as exc:  # keep the reason; waiters fail instead of hanging
            logger.exception("registry consumer stopped")
            with self._cond:
                self._failure = str(exc)
                self._cond.notify_all()
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        with self._cond:
            if value is not None:  # a tombstone carries nothing to apply
                try:
                    self._view.apply(decode_record(value, key))
                except InvalidRecord as exc:
                    logger.warning("skipping invalid registry record at offset %d (key %r): %s",
                                   offset, key, exc)
            self._applied = offset
            self._cond.notify_all()

    # ---- read-your-writes -------------------------------------------------------------------
    def wait_for(self, offset: int, timeout: float = 30.0) -> None:
        """Block until the record at ``offset`` (or a later one) has been applied locally."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._applied < offset and self._eof <= offset:
                if self._failure is not None:
                    raise BrokerError(f"registry consumer failed: {self._failure}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError(f"registry view did not reach offset {offset} within {timeout}s")
                self._cond.wait(left)

    def sync(self, timeout: float = 30.0) -> None:
        """Catch up with everything written to the registry so far (by any process)."""
        probe = Consumer(consumer_config(self.bootstrap, "agenttrail-registry-probe"))
        deadline = time.monotonic() + timeout
        try:
            while True:  # a just-created topic can be unknown to the metadata for a moment
                try:
                    _, high = probe.get_watermark_offsets(TopicPartition(REGISTRY_TOPIC, 0), timeout=timeout)
                    break
                except Exception as exc:
                    if time.monotonic() >= deadline:
                        raise BrokerError(f"cannot read the registry at {self.bootstrap}: {exc}") from None
                    time.sleep(0.2)
        finally:
            probe.close()
        if high > 0:
            self.wait_for(high - 1, timeout)
        else:
            self.wait_for(-1, timeout)

    def write(self, *records: Record, wait: bool = True) -> int:
        """Produce records in order; return the last offset once applied locally (when ``wait``)."""
        if self._producer is None:
            raise BrokerError("the registry is not started")
        offsets: list[int] = []
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                offsets.append(msg.offset())  # type: ignore[attr-defined]

        for record in records:
            key, value = encode_record(record)
            self._producer.produce(REGISTRY_TOPIC, value=value, key=key, on_delivery=delivered)
        left = self._producer.flush(30)
        if errors or left or len(offsets) != len(records):
            raise BrokerError(f"registry write failed: {'; '.join(errors) or 'delivery timed out'}")
        last = max(offsets)
        if wait:
            self.wait_for(last)
        return last

    @contextmanager
    def read(self) -> Iterator[RegistryView]:
        """The view, held still while the caller reads it."""
        with self._cond:
            yield self._view
