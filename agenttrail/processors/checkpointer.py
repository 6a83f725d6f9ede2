"""Checkpoints and retention, the I/O shell: follows every ledger topic, signs what it saw.

Every `checkpoint_interval_seconds`, for every active tenant (also when idle), it writes a signed
checkpoint over the tenant's session heads to `agenttrail.checkpoints`, chained to the previous
one. Every `retention_interval_seconds`, sessions whose last event is older than the tenant's
retention cut get a signed retention anchor (their final heads) and a purge command that the sinks
execute. Whole sessions are purged, never a prefix, so every chain that remains is complete;
`lesson` rows are kept forever and still verify one by one (signature and entry hash).

One checkpointer runs per cluster (it reads all partitions). On start it re-reads the ledger to
rebuild the heads and the checkpoints topic to continue each tenant's checkpoint chain.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from agenttrail.config import Settings
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, LEDGER_PATTERN, tenant_of_topic
from agenttrail.metrics import METRICS
from agenttrail.processors.checkpoint import build_checkpoint, parse_note
from agenttrail.processors.retention import PurgeCommand, RetentionPolicy, plan_purge
from agenttrail.processors.service_key import ServiceKey
from agenttrail.schemas.ledger import decode_ledger

logger = logging.getLogger(__name__)

KIND_HEADER = "kind"


@dataclass(slots=True)
class TenantHeads:
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # session -> (length, head)
    last_ts: dict[str, int] = field(default_factory=dict)  # session -> newest event ts
    anchored: set[str] = field(default_factory=set)  # sessions already anchored and purged
    prev_checkpoint: bytes | None = None
    prev_anchor: bytes | None = None


class Checkpointer:
    def __init__(self, settings: Settings, bootstrap: str, registry: object, key: ServiceKey,
                 retention_interval_seconds: float = 3600.0) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry  # agenttrail.control.view.RegistryView-like: .tenants()
        self.key = key
        self.retention_interval = retention_interval_seconds
        self.tenants: dict[str, TenantHeads] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def _tenant(self, tenant_id: str) -> TenantHeads:
        state = self.tenants.get(tenant_id)
        if state is None:
            state = self.tenants[tenant_id] = TenantHeads()
        return state

    # -- rebuild -------------------------------------------------------------------------------
    def load_previous_notes(self, timeout: float = 60.0) -> None:
        """Continue each tenant's checkpoint and anchor chains from the checkpoints topic.

        A just-created topic can answer NOT_LEADER / UNKNOWN_PARTITION for a moment: retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._load_previous_notes()
                return
            except KafkaException as exc:
                if time.monotonic() >= deadline or exc.args[0].fatal():
                    raise
                logger.info("checkpoints topic not ready (%s): retrying", exc.args[0].str())
                time.sleep(0.5)

    def _load_previous_notes(self) -> None:
        consumer = Consumer(consumer_config(self.bootstrap, "agenttrail-checkpointer-load",
                                            **{"enable.partition.eof": True}))
        try:
            md = consumer.list_topics(CHECKPOINTS_TOPIC, timeout=30).topics[CHECKPOINTS_TOPIC]
            parts = [TopicPartition(CHECKPOINTS_TOPIC, p, OFFSET_BEGINNING) for p in md.partitions]
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=30)[1] for p in parts}
            todo = {p for p, high in ends.items() if high > 0}
            consumer.assign(parts)
            deadline = time.monotonic() + 120
            while todo and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            todo.discard(msg.partition())
                        continue
                    self._absorb_note(msg.value(), dict(msg.headers() or []))
        finally:
            consumer.close()

    def _absorb_note(self, value: bytes, headers: dict[str, bytes]) -> None:
        kind = headers.get(KIND_HEADER, b"").decode()
        if kind == "purge":
            cmd = PurgeCommand.from_json(value)
            self._tenant(cmd.tenant_id).anchored.update(cmd.session_ids or ())
            return
        try:
            note = parse_note(value)
        except Exception:
            logger.warning("skipping unreadable note on %s", CHECKPOINTS_TOPIC)
            return
        state = self._tenant(note.tenant)
        if note.kind == "anchor":
            state.prev_anchor = note.hash
        else:
            state.prev_checkpoint = note.hash

    def absorb_ledger(self, value: bytes, tenant: str | None = None, session: str | None = None,
                      headers: dict[str, bytes] | None = None) -> None:
        """Fold one ledger record into the heads: from its chain headers when present (no decode)."""
        head = headers or {}
        if tenant and session and {"chain_index", "entry_hash", "ts"} <= head.keys():
            length, entry, ts = int(head["chain_index"]) + 1, head["entry_hash"], int(head["ts"])
        else:
            rec = decode_ledger(value)
            tenant, session = rec.envelope.tenant_id, rec.envelope.session_id
            length, entry, ts = rec.chain_index + 1, rec.entry_hash, rec.envelope.ts
        with self._lock:
            state = self._tenant(tenant)
            current = state.heads.get(session)
            if current is None or current[0] < length:
                state.heads[session] = (length, entry)
            if ts > state.last_ts.get(session, 0):
                state.last_ts[session] = ts

    # -- outputs -------------------------------------------------------------------------------
    def checkpoint_all(self, producer: Producer, now_micros: int) -> int:
        written = 0
        with self._lock:
            for tenant in self._active_tenants():
                state = self._tenant(tenant)
                cp = build_checkpoint(tenant, dict(state.heads), state.prev_checkpoint, now_micros, self.key)
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=cp.to_text().encode(),
                                 headers=[(KIND_HEADER, b"checkpoint")])
                state.prev_checkpoint = cp.hash
                written += 1
        METRICS.inc("agenttrail_checkpoints_total", written, help="signed checkpoints written")
        return written

    def retention_all(self, producer: Producer, now_micros: int) -> list[PurgeCommand]:
        """Anchor and purge the whole sessions that left every tenant's retention window."""
        commands: list[PurgeCommand] = []
        with self._lock:
            for tenant in self._active_tenants():
                state = self._tenant(tenant)
                policy = RetentionPolicy(self._retention_days(tenant))
                planned = plan_purge(tenant, policy, now_micros, state.heads, state.last_ts,
                                     state.prev_anchor, self.key, state.anchored)
                if planned is None:
                    continue
                anchor, cmd = planned  # the anchor goes first: sinks purge only what is anchored
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=anchor.to_text().encode(),
                                 headers=[(KIND_HEADER, b"anchor")])
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=cmd.to_json(),
                                 headers=[(KIND_HEADER, b"purge")])
                state.prev_anchor = anchor.hash
                state.anchored.update(cmd.session_ids or ())
                commands.append(cmd)
        return commands

    def _active_tenants(self) -> list[str]:
        tenants = getattr(self.registry, "tenants", None)
        listed = [t.tenant_id for t in tenants() if getattr(t, "status", "active") == "active"] if tenants else []
        return sorted(set(listed) | set(self.tenants if not listed else ()))

    def _retention_days(self, tenant: str) -> int:
        lookup = getattr(self.registry, "tenant", None)
        found = lookup(tenant) if lookup else None
        return int(getattr(found, "retention_days", self.settings.retention_days))

    # -- loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.load_previous_notes()
        producer = Producer(producer_config(self.bootstrap))
        consumer = Consumer(consumer_config(self.bootstrap, f"agenttrail-checkpointer-{time.time_ns()}"))
        consumer.subscribe([LEDGER_PATTERN])
        interval = self.settings.checkpoint_interval_seconds
        next_cp = time.monotonic() + interval
        next_retention = time.monotonic() + min(interval, self.retention_interval)
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(5000, 0.2):
                    if msg.error() is None and (tenant := tenant_of_topic(msg.topic())):
                        try:
                            key = msg.key()
                            self.absorb_ledger(msg.value(), tenant, key.decode() if key else None,
                                               dict(msg.headers() or []))
                        except Exception:
                            logger.warning("unreadable ledger record at %s[%d]@%d", msg.topic(),
                                           msg.partition(), msg.offset())
                now = time.monotonic()
                if now >= next_retention:
                    next_retention = now + self.retention_interval
                    self.retention_all(producer, time.time_ns() // 1000)
                if now >= next_cp:
                    next_cp = now + interval
                    self.checkpoint_all(producer, time.time_ns() // 1000)
                    producer.flush(30)
                producer.poll(0)
        finally:
            consumer.close()
            producer.flush(10)
