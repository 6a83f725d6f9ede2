"""The SDK's Kafka shell: a confluent-kafka producer with delivery accounting and an offline spool.

How nothing is lost and order holds (per session, hence per partition key):

* librdkafka is configured with acks=all, idempotence and an **infinite** message timeout, so
  while the broker is down it keeps every event in its local queue, in order, and delivers them
  exactly once when the broker returns (idempotent producer: no duplicates from retries).
* When that queue is full (a long outage, or ``queue_max_messages`` set low), events go to the
  **spool** file instead, and from then on *every* new event goes to the spool behind them. Each
  ``send`` first moves spooled events back into librdkafka, in file order, as room frees up; when
  the spool is empty events go straight to librdkafka again. The events inside librdkafka are
  therefore always older than the ones in the spool, so the order of sends is the order on the
  topic.
* ``close()`` waits up to its timeout; whatever is still undelivered is purged from librdkafka
  and written, oldest first, in front of the spool's unread records. The next producer using the
  same spool path sends them first. (A purged in-flight event may have reached the broker: that
  can duplicate it, never lose it; the verifier drops duplicate ``seq``.)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from agenttrail.errors import BrokerError
from agenttrail.kafka.clients import producer_config
from agenttrail.producers.spool import Spool, SpoolRecord

logger = logging.getLogger(__name__)

_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class EventSink(Protocol):
    """Where an AgentClient hands encoded events (a real producer, or a fake in tests)."""

    def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    def flush(self, timeout: float = ...) -> int: ...
    def close(self, timeout: float = ...) -> int: ...


@dataclass(frozen=True, slots=True)
class ProducerStats:
    sent: int  # handed to the producer by callers
    acknowledged: int  # acked by the broker (acks=all)
    failed: int  # permanently rejected (logged)
    spooled: int  # written to the spool file (including at close)
    queued: int  # inside librdkafka right now
    spool_pending: int  # in the spool file, not yet handed back to librdkafka
    broker_down: bool


class MemorySink:
    """An EventSink that keeps what it is given (tests, benchmarks without a broker)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.count = 0

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.count += 1
        if self.keep:
            self.messages.append((topic, key, value))

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def close(self, timeout: float = 0.0) -> int:
        return 0


class EventProducer:
    """Thread-safe ``send(topic, key, value)`` onto Kafka, spooling to disk when it cannot."""

    def __init__(self, bootstrap: str, *, spool_path: Path | None = None, linger_ms: int = 10,
                 queue_max_messages: int | None = None, fsync_interval: float = 1.0,
                 **config: Any) -> None:
        overrides: dict[str, Any] = {
            "linger.ms": linger_ms,
            "message.timeout.ms": 0,  # never give up: the broker may be down for a while
            "error_cb": self._on_error,
            "logger": logging.getLogger("agenttrail.librdkafka"),
            **config,
        }
        if queue_max_messages is not None:
            overrides["queue.buffering.max.messages"] = queue_max_messages
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self._spool = Spool(spool_path, fsync_interval) if spool_path is not None else None
        self._lock = threading.RLock()
        self._ids = 0
        self._sent = self._acked = self._failed = self._spooled = 0
        self._spool_inflight = 0  # handed over from the spool, not yet acknowledged
        self._purged: list[tuple[int, SpoolRecord]] = []
        self._broker_down = False
        self._closed = False

    # -- callbacks (run inside poll/flush) ------------------------------------------------------
    def _on_delivery(self, msg_id: int, from_spool: bool, err: KafkaError | None, msg: Message) -> None:
        if from_spool:
            self._spool_inflight -= 1
        if err is None:
            self._acked += 1
            self._broker_down = False
        elif err.code() in _PURGED:
            rec = SpoolRecord(msg.topic() or "", msg.key() or b"", msg.value() or b"")
            self._purged.append((msg_id, rec))
        else:
            self._failed += 1
            if self._failed <= 10 or self._failed % 1000 == 0:
                logger.error("event to %s not delivered (%d so far): %s",
                             msg.topic(), self._failed, err.str())
        if (err is None and from_spool and self._spool is not None and not self._spool.pending
                and not self._spool_inflight):
            self._spool.reset()  # everything that was spooled is down

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._broker_down:
                logger.warning("Kafka unreachable: holding events locally until it returns")
            self._broker_down = True
        elif err.fatal():
            logger.error("fatal producer error: %s", err.str())
        else:
            logger.debug("producer: %s", err.str())

    # -- sending --------------------------------------------------------------------------------
    def _produce(self, rec: SpoolRecord, from_spool: bool) -> None:
        self._ids += 1
        self._producer.produce(rec.topic, rec.value, rec.key,
                               on_delivery=partial(self._on_delivery, self._ids, from_spool))

    def _drain(self) -> None:
        """Move spooled events into librdkafka, oldest first, while it has room."""
        spool = self._spool
        assert spool is not None
        while (rec := spool.peek()) is not None:
            try:
                self._produce(rec, from_spool=True)
            except BufferError:
                return
            self._spool_inflight += 1
            spool.advance()

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        with self._lock:
            if self._closed:
                raise BrokerError("the producer is closed")
            self._sent += 1
            if not self._sent & 63:
                self._producer.poll(0)  # serve delivery callbacks now and then
            rec = SpoolRecord(topic, key, value)
            if self._spool is not None and self._spool.pending:
                self._drain()
            if self._spool is not None and self._spool.pending:
                self._spool.append(rec)
                self._spooled += 1
                return
            try:
                self._produce(rec, from_spool=False)
                return
            except BufferError:
                self._producer.poll(0.05)
            try:
                self._produce(rec, from_spool=False)
            except BufferError:
                if self._spool is None:
                    self._sent -= 1
                    raise BrokerError("the local queue is full and no spool is configured") from None
                self._spool.append(rec)
                self._spooled += 1

    def poll(self, timeout: float = 0.0) -> int:
        with self._lock:
            served = self._producer.poll(timeout)
            if self._spool is not None and self._spool.pending:
                self._drain()
            return served

    def _outstanding(self) -> int:
        return len(self._producer) + (self._spool.pending if self._spool is not None else 0)

    def flush(self, timeout: float = 30.0) -> int:
        """Deliver everything (spool included) or until ``timeout``; returns what is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._spool is not None and self._spool.pending:
                    self._drain()
                left = max(0.0, deadline - time.monotonic())
                self._producer.flush(min(left, 0.2))
                if not self._outstanding() or time.monotonic() >= deadline:
                    return self._outstanding()

    def close(self, timeout: float = 10.0) -> int:
        """Flush for up to ``timeout``; spool what is left (oldest first). Returns the spooled count."""
        with self._lock:
            if self._closed:
                return 0
            left = self.flush(timeout)
            spooled = 0
            if left:
                spooled = self._spool_leftovers()
            if self._spool is not None:
                if not self._spool.pending and not self._spool_inflight:
                    self._spool.reset()
                self._spool.close()
            self._closed = True
            return spooled

    def _spool_leftovers(self) -> int:
        self._purged.clear()
        self._producer.purge(in_queue=True, in_flight=True, blocking=True)
        self._producer.flush(1.0)  # serves the purge callbacks
        purged = [rec for _, rec in sorted(self._purged, key=lambda item: item[0])]
        self._purged.clear()
        if self._spool is None:
            self._failed += len(purged)
            logger.error("%d events could not be delivered and no spool is configured: lost", len(purged))
            return 0
        unread = self._spool.unread()
        self._spool.rewrite(purged + unread)
        self._spool_inflight = 0
        self._spooled += len(purged)
        logger.warning("broker unreachable: %d events kept in spool %s for the next run",
                       len(purged) + len(unread), self._spool.path)
        return len(purged) + len(unread)

    @property
    def stats(self) -> ProducerStats:
        return ProducerStats(
            sent=self._sent, acknowledged=self._acked, failed=self._failed, spooled=self._spooled,
            queued=len(self._producer), spool_pending=self._spool.pending if self._spool else 0,
            broker_down=self._broker_down,
        )

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
