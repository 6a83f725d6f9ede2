"""The Kafka-consuming shell of the ClickHouse sink: poll, hand to ClickHouseSink, commit what it says.

Subscribes to every tenant ledger (pattern, new tenants seen within the metadata refresh
interval), `agenttrail.checkpoints` and `agenttrail.dlq`. Auto-commit is off: an offset is
committed only after the insert that covers it was acknowledged. On revocation pending batches
are flushed and committed first; if an insert fails, the consumer is rebuilt so it resumes from
the committed offsets (the inserts that did land are deduplicated on replay).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from agenttrail.config import Settings
from agenttrail.errors import ConfigError
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, DLQ_TOPIC, LEDGER_PATTERN
from agenttrail.sinks.clickhouse.store import ClickHouseStore, StoreError
from agenttrail.sinks.clickhouse.writer import ClickHouseSink, Partition

logger = logging.getLogger(__name__)

GROUP_ID = "agenttrail-clickhouse-sink"
SUBSCRIPTION = [LEDGER_PATTERN, CHECKPOINTS_TOPIC, DLQ_TOPIC]


def _commit(consumer: Consumer, offsets: dict[Partition, int]) -> None:
    if offsets:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
        logger.debug("committed %s", offsets)


class ClickHouseSinkRunner:
    """Runs the sink loop in a daemon thread: `start()`, `stop()`; or call `run(stop_event)`."""

    def __init__(
        self,
        settings: Settings,
        store: ClickHouseStore,
        *,
        bootstrap: str | None = None,
        group_id: str = GROUP_ID,
        instance_id: str | None = None,
        batch_rows: int = 10_000,
        max_age_s: float = 0.25,
        retention_days: int | Callable[[str], int] | None = None,
    ) -> None:
        self._bootstrap = bootstrap or settings.kafka_bootstrap
        if not self._bootstrap:
            raise ConfigError("the ClickHouse sink needs a Kafka bootstrap address")
        self._store = store
        self._group_id = group_id
        # Static membership: a sink restarted after a crash with the same instance id takes its
        # partitions back at once instead of waiting out the dead member's session timeout.
        self._instance_id = instance_id
        self._batch_rows = batch_rows
        self._max_age_s = max_age_s
        self._retention = settings.retention_days if retention_days is None else retention_days
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sink = self._new_sink()

    def _new_sink(self) -> ClickHouseSink:
        return ClickHouseSink(
            self._store, batch_rows=self._batch_rows, max_age_s=self._max_age_s,
            retention_days=self._retention,
        )

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="clickhouse-sink", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop_event: threading.Event) -> None:
        """Consume until `stop_event` is set; an insert failure rebuilds the consumer after a pause."""
        while not stop_event.is_set():
            try:
                self._consume(stop_event)
            except (StoreError, KafkaException) as exc:
                logger.error("clickhouse sink: %s; resuming from committed offsets in 2 s", exc)
                self.sink.discard()
                stop_event.wait(2.0)
            except Exception:  # a bug must not silently end the sink thread: log it, resume
                logger.exception("clickhouse sink crashed; resuming from committed offsets in 2 s")
                self.sink.discard()
                stop_event.wait(2.0)

    def _consume(self, stop_event: threading.Event) -> None:
        extra: dict[str, object] = {"max.poll.interval.ms": 300_000, "fetch.max.bytes": 64 * 1024 * 1024,
                                    "fetch.wait.max.ms": 100}
        if self._instance_id:
            extra["group.instance.id"] = self._instance_id
        config = consumer_config(self._bootstrap, self._group_id, **extra)  # type: ignore[arg-type]
        consumer = Consumer(config)
        sink = self.sink

        def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
            keys = [(tp.topic, tp.partition) for tp in partitions]
            try:
                _commit(c, {k: o for k, o in sink.flush(force=True).items() if k in keys})
            except (StoreError, KafkaException) as exc:
                logger.error("flush on revoke failed, replay will cover it: %s", exc)
            sink.discard(keys)

        consumer.subscribe(SUBSCRIPTION, on_revoke=on_revoke, on_lost=on_revoke)
        clean = False
        try:
            while not stop_event.is_set():
                for msg in consumer.consume(num_messages=5_000, timeout=0.05):
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                            logger.warning("consumer error: %s", error)
                        continue
                    _, timestamp_ms = msg.timestamp()
                    sink.add(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), timestamp_ms)
                if sink.due():
                    _commit(consumer, sink.flush())
            _commit(consumer, sink.flush(force=True))
            clean = True
        finally:
            sink.discard()
            try:
                consumer.close()
            except KafkaException:  # pragma: no cover - closing a broken client
                logger.debug("consumer close failed", exc_info=not clean)


def run_clickhouse_sink(
    settings: Settings, store: ClickHouseStore, stop_event: threading.Event, **options: object
) -> None:
    """Blocking entry point for `agenttrail serve` (run it in a thread)."""
    runner = ClickHouseSinkRunner(settings, store, **options)  # type: ignore[arg-type]
    started = time.monotonic()
    runner.run(stop_event)
    logger.info(
        "clickhouse sink stopped after %.1f s: %d rows in %d batches",
        time.monotonic() - started, runner.sink.stats.rows_inserted, runner.sink.stats.batches_inserted,
    )
