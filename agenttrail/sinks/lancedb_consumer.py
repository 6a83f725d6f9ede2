"""The Kafka-consuming shell of the LanceDB sink: ``agenttrail.embeddings`` -> LanceStore.upsert.

Auto-commit is off: offsets are committed only after the upsert that covers them returned. An
upsert is a merge on (tenant_id, event_id), so a batch replayed after a crash leaves one row per
event. Records that do not decode are logged and skipped (their offsets still advance).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError, ConfigError, InvalidEvent
from agenttrail.kafka.clients import consumer_config
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, EMBEDDINGS_TOPIC
from agenttrail.metrics import METRICS
from agenttrail.processors.embed import EmbeddingRecord, decode_embedding
from agenttrail.processors.retention import PurgeCommand
from agenttrail.sinks.lancedb import LanceStore

logger = logging.getLogger(__name__)

GROUP_ID = "agenttrail-lancedb-sink"


def decode_values(values: Iterable[bytes | None]) -> tuple[list[EmbeddingRecord], int]:
    """(records that decode, how many did not): the pure part of the loop."""
    records: list[EmbeddingRecord] = []
    bad = 0
    for value in values:
        try:
            records.append(decode_embedding(value or b""))
        except InvalidEvent as exc:
            bad += 1
            logger.warning("skipping an unreadable embedding record: %s", exc)
    return records, bad


class LanceSinkRunner:
    """Runs the loop in a daemon thread: `start()`, `stop()`; or call `run(stop_event)`."""

    def __init__(self, settings: Settings, lance: LanceStore, *, bootstrap: str | None = None,
                 group_id: str = GROUP_ID, batch: int = 1_000, poll_timeout_s: float = 0.5) -> None:
        self._bootstrap = bootstrap or settings.kafka_bootstrap
        if not self._bootstrap:
            raise ConfigError("the LanceDB sink needs a Kafka bootstrap address")
        self._lance = lance
        self._group_id = group_id
        self._batch = batch
        self._poll_timeout_s = poll_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rows_written = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="lancedb-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _maybe_purge(self, msg: Message) -> None:
        command = _purge_command(msg)
        if command is not None:  # idempotent: a replayed command deletes nothing more
            self._lance.purge(command.tenant_id, command.before_ts_micros, command.keep_types, command.session_ids)

    def run(self, stop_event: threading.Event) -> None:
        while not stop_event.is_set():
            try:
                self._consume(stop_event)
            except (AgentTrailError, KafkaException, OSError) as exc:
                logger.error("lancedb sink: %s; resuming from committed offsets in 2 s", exc)
                stop_event.wait(2.0)
            except Exception:  # a bug must not silently end the sink thread: log it, resume
                logger.exception("lancedb sink crashed; resuming from committed offsets in 2 s")
                stop_event.wait(2.0)

    def _consume(self, stop_event: threading.Event) -> None:
        consumer = Consumer(consumer_config(self._bootstrap, self._group_id))
        consumer.subscribe([EMBEDDINGS_TOPIC, CHECKPOINTS_TOPIC])  # checkpoints: retention purge commands
        try:
            while not stop_event.is_set():
                messages = [m for m in consumer.consume(num_messages=self._batch, timeout=self._poll_timeout_s)
                            if _usable(m)]
                if not messages:
                    continue
                for m in messages:
                    if m.topic() == CHECKPOINTS_TOPIC:
                        self._maybe_purge(m)
                messages = [m for m in messages if m.topic() == EMBEDDINGS_TOPIC]
                records, bad = decode_values(m.value() for m in messages)
                written = self._lance.upsert(records)
                consumer.commit(asynchronous=False)
                self.rows_written += written
                METRICS.inc("agenttrail_lancedb_rows_total", written, help="embedding rows upserted")
                if bad:
                    METRICS.inc("agenttrail_lancedb_skipped_total", bad, help="unreadable embedding records")
        finally:
            try:
                consumer.close()
            except KafkaException:  # pragma: no cover - closing a broken client
                logger.debug("consumer close failed", exc_info=True)


def _purge_command(msg: Message) -> PurgeCommand | None:
    kind = dict(msg.headers() or []).get("kind", b"")
    if kind != b"purge":
        return None
    try:
        return PurgeCommand.from_json(msg.value())
    except AgentTrailError as exc:
        logger.error("unreadable purge command at offset %d: %s", msg.offset(), exc)
        return None


def _usable(msg: Message) -> bool:
    error = msg.error()
    if error is None:
        return True
    if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
        logger.warning("lancedb sink consumer error: %s", error)
    return False
