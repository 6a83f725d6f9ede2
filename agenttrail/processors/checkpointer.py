"""Checkpoints and retention, the I/O shell: follows every ledger topic, signs what it saw.

Every `checkpoint_interval_seconds`, for every active tenant (also when idle), it writes a signed
checkpoint over the tenant's session heads to `agenttrail.checkpoints`, chained to the previous
one. Every `retention_interval_seconds`, sessions whose last event is older than the tenant's
retention cut get a signed retention anchor (their final heads) and a purge command that the sinks
execute. Whole sessions are purged, never a prefix, so every chain that remains is complete;
`lesson` rows are kept forever and still verify one by one (signature and entry hash).

One checkpointer runs per cluster (it reads all partitions). On start it restores what it knows of
its own notes (each tenant's previous checkpoint and anchor, the sessions anchored) from its notes
snapshots and reads the checkpoints topic only after them (`processors.checkpointer_notes`), and
rebuilds the heads per ledger partition (`processors.checkpointer_state`): the newest snapshot of
the partition, checked as the ledger after it is folded on, else the whole partition. Right after
writing checkpoints and flushing them, at most every `checkpointer_snapshot_seconds`, it snapshots
the partitions that changed and its notes to the compacted `agenttrail.checkpointer-state` topic,
so a restart reads only what came after.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from agenttrail.config import Settings
from agenttrail.errors import BrokerError
from agenttrail.kafka.admin import list_topics
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.partition_reader import Part, iter_partitions
from agenttrail.kafka.topics import CHECKPOINTER_STATE_TOPIC, CHECKPOINTS_TOPIC, LEDGER_PATTERN, tenant_of_topic
from agenttrail.metrics import METRICS, Metrics
from agenttrail.processors.checkpoint import build_checkpoint
from agenttrail.processors.checkpointer_notes import KIND_HEADER, NOTE_ROWS, load_notes, note_rows, notes_snapshots
from agenttrail.processors.checkpointer_state import (
    HEAD_ROWS,
    REFUSED,
    UNREADABLE,
    PartitionHeads,
    merge_heads,
    transactions,
    usable,
)
from agenttrail.processors.retention import PurgeCommand, RetentionPolicy, plan_purge
from agenttrail.processors.service_key import ServiceKey
from agenttrail.processors.snapshot import Snapshot
from agenttrail.processors.snapshot_io import load_snapshots, open_snapshot_topic, write_snapshots

logger = logging.getLogger(__name__)

LEDGER_RE = re.compile(LEDGER_PATTERN)
# A restore takes as long as the history it folds: no deadline (stop() ends it, checked every 4096 records).
RESTORE_TIMEOUT_S = math.inf


@dataclass(slots=True)
class TenantHeads:
    parts: dict[int, PartitionHeads] = field(default_factory=dict)  # ledger partition -> its fold
    anchored: set[str] = field(default_factory=set)  # sessions already anchored and purged
    prev_checkpoint: bytes | None = None
    prev_anchor: bytes | None = None

    def merged(self) -> tuple[dict[str, tuple[int, bytes]], dict[str, int]]:
        """Every session's (length, head) and newest ts, over the tenant's ledger partitions."""
        return merge_heads(self.parts.values())


@dataclass(frozen=True, slots=True)
class Restored:
    partitions: int  # ledger partitions found on start
    from_snapshots: int  # of which restored from a snapshot (and the ledger after it)
    refused: int  # snapshots found but not used: outside the ledger, or not continued by it
    folded: dict[Part, int]  # ledger records read per partition


class Checkpointer:
    def __init__(self, settings: Settings, bootstrap: str, registry: object, key: ServiceKey,
                 retention_interval_seconds: float = 3600.0, *, metrics: Metrics = METRICS) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry  # agenttrail.control.view.RegistryView-like: .tenants()
        self.key = key
        self.retention_interval = retention_interval_seconds
        self.metrics = metrics
        self.tenants: dict[str, TenantHeads] = {}
        self.restored: Restored | None = None
        self.snapshot_every = settings.checkpointer_snapshot_seconds
        self._state_partitions = 0
        self._state_producer: Producer | None = None
        self._dirty: set[Part] = set()  # ledger partitions folded on since their last snapshot
        self._note_ends: dict[int, int] = {}  # checkpoints partition -> next offset (read on start, then delivered)
        self._notes_dirty = False  # notes delivered since the last notes snapshot
        self._notes_lost = False  # a note was not delivered: the state is not the topic's, never snapshot it
        self._snapshot_at = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def _tenant(self, tenant_id: str) -> TenantHeads:
        state = self.tenants.get(tenant_id)
        if state is None:
            state = self.tenants[tenant_id] = TenantHeads()
        return state

    def _partition(self, tenant_id: str, partition: int) -> PartitionHeads:
        parts = self._tenant(tenant_id).parts
        state = parts.get(partition)
        if state is None:
            state = parts[partition] = PartitionHeads()
        return state

    # -- previous notes ------------------------------------------------------------------------
    def load_previous_notes(self, timeout: float = 60.0) -> None:
        """Continue each tenant's checkpoint and anchor chains from the checkpoints topic.

        A just-created topic can answer NOT_LEADER / UNKNOWN_PARTITION for a moment: retried
        (reading the notes again is harmless: the newest of each chain wins, anchored sets add up)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._load_previous_notes()
                return
            except (KafkaException, BrokerError) as exc:
                fatal = isinstance(exc, KafkaException) and exc.args[0].fatal()
                if time.monotonic() >= deadline or fatal:
                    raise
                logger.info("checkpoints topic not ready (%s): retrying", exc)
                time.sleep(0.5)

    def _load_previous_notes(self) -> None:
        count = list_topics(self.bootstrap).get(CHECKPOINTS_TOPIC, 0)
        state_partitions = self._state_partitions if self.snapshot_every > 0 else 0
        load = load_notes(self.bootstrap, state_partitions, self._tenant, count, timeout=RESTORE_TIMEOUT_S)
        self._note_ends = load.ends
        logger.info("checkpointer read %d notes (%s)", load.read, "after its notes snapshots" if load.restored
                    else f"all of {CHECKPOINTS_TOPIC}")
        self.metrics.inc("agenttrail_checkpointer_notes_read_total", load.read,
                         help=f"records of {CHECKPOINTS_TOPIC} read on start to continue the tenants' chains")
        self.metrics.set("agenttrail_checkpointer_notes_restored", float(load.restored),
                         help="1: the last start restored its notes from snapshots; 0: it read every note")

    def _delivered(self, err: object, msg: object) -> None:
        """A note's delivery report: the end of its partition moves past it."""
        if err is not None:
            logger.error("note not written (%s): no notes snapshots until a restart", err)
            self._notes_lost = True
        else:
            partition, end = msg.partition(), msg.offset() + 1  # type: ignore[attr-defined]
            self._note_ends[partition], self._notes_dirty = max(self._note_ends.get(partition, 0), end), True

    # -- restore -------------------------------------------------------------------------------
    def restore(self) -> Restored:
        """Rebuild the heads of every ledger partition: its newest usable snapshot plus the ledger
        after it, checked as it is folded on; the whole partition when there is none or it is refused."""
        ledgers = sorted((topic, p) for topic, count in list_topics(self.bootstrap).items()
                         if LEDGER_RE.fullmatch(topic) and tenant_of_topic(topic) for p in range(count))
        snapshots, refused = self._usable_snapshots(ledgers)
        states = {part: PartitionHeads.restore(snapshots[part]) if part in snapshots else PartitionHeads()
                  for part in ledgers}
        folded: dict[Part, int] = {}
        broken = self._fold(states, set(snapshots), folded)
        for part in sorted(broken):
            logger.warning("checkpointer snapshot of %s[%d] does not continue into its ledger: folding the whole "
                           "partition", *part)
            states[part] = PartitionHeads()
        if broken:
            self._fold({part: states[part] for part in broken}, set(), folded)
        with self._lock:
            for (topic, partition), state in states.items():
                self._tenant(tenant_of_topic(topic) or "").parts[partition] = state
        self._dirty.update(part for part, count in folded.items() if count)  # snapshot them at the next chance
        restored = Restored(len(ledgers), len(snapshots) - len(broken), refused + len(broken), folded)
        self.restored = restored
        logger.info("checkpointer restored %d ledger partitions (%d from snapshots, %d refused): %d records folded",
                    restored.partitions, restored.from_snapshots, restored.refused, sum(folded.values()))
        self.metrics.set("agenttrail_checkpointer_restored", float(restored.from_snapshots > 0),
                         help="1: the last start restored heads from snapshots; 0: it folded every ledger whole")
        self.metrics.inc("agenttrail_checkpointer_partitions_restored_total", restored.from_snapshots,
                         help="ledger partitions whose heads came from a snapshot on start")
        self.metrics.inc("agenttrail_checkpointer_snapshots_refused_total", restored.refused,
                         help="checkpointer snapshots found on start but not used (the partition was folded whole)")
        self.metrics.inc("agenttrail_checkpointer_records_folded_total", sum(folded.values()),
                         help="ledger records folded to rebuild the checkpointer's heads on start")
        return restored

    def _usable_snapshots(self, ledgers: list[Part]) -> tuple[dict[Part, Snapshot], int]:
        """The newest snapshot of each ledger partition whose offset lies within the ledger, and how
        many were left out. Snapshots that cannot be read at all: none (every ledger is folded)."""
        if self.snapshot_every <= 0 or self._state_partitions < 1 or not ledgers:
            return {}, 0
        try:
            found = load_snapshots(self.bootstrap, ledgers, self._state_partitions, topic=CHECKPOINTER_STATE_TOPIC,
                                   rows=HEAD_ROWS, group="agenttrail-checkpointer-state", timeout=RESTORE_TIMEOUT_S)
        except BrokerError as exc:
            logger.warning("checkpointer snapshots unreadable (%s): folding every ledger", exc)
            return {}, 0
        outside = 0
        consumer = Consumer(consumer_config(self.bootstrap, "agenttrail-checkpointer-state"))
        try:
            for part, snap in sorted(found.items()):
                low, high = consumer.get_watermark_offsets(TopicPartition(*part), timeout=30, cached=False)
                if not usable(snap, low, high):
                    logger.warning("checkpointer snapshot of %s[%d] at offset %d is outside its ledger [%d, %d): "
                                   "folding the whole partition", *part, snap.ledger_offset, low, high)
                    del found[part]
                    outside += 1
        finally:
            consumer.close()
        return found, outside

    def _fold(self, states: dict[Part, PartitionHeads], checked: set[Part], folded: dict[Part, int]) -> set[Part]:
        """Fold each partition's ledger from its state's offset on; the checked partitions whose
        snapshot a record did not continue (left as they were when refused)."""
        refused: set[Part] = set()
        reader = iter_partitions(self.bootstrap, list(states), {p: s.offset for p, s in states.items() if s.offset},
                                 group="agenttrail-checkpointer-restore", timeout=RESTORE_TIMEOUT_S)
        try:
            for n, msg in enumerate(reader):
                part = (msg.topic(), msg.partition())
                if part in refused:
                    continue
                folded[part] = folded.get(part, 0) + 1
                outcome = states[part].fold_record(msg.offset(), msg.key(), msg.value(), dict(msg.headers() or []),
                                                   checked=part in checked)
                if outcome == REFUSED:
                    refused.add(part)
                elif outcome == UNREADABLE:
                    logger.warning("unreadable ledger record at %s[%d]@%d", *part, msg.offset())
                if n % 4096 == 0 and self._stop.is_set():
                    break
        finally:
            reader.close()
        return refused

    # -- outputs -------------------------------------------------------------------------------
    def absorb_ledger(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                      headers: dict[str, bytes]) -> str:
        """Fold one ledger record (in offset order per partition) into its tenant's heads."""
        with self._lock:
            return self._absorb(topic, partition, offset, key, value, headers)

    def _absorb(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                headers: dict[str, bytes]) -> str:
        tenant = tenant_of_topic(topic)
        if tenant is None:
            return UNREADABLE
        outcome = self._partition(tenant, partition).fold_record(offset, key, value, headers)
        self._dirty.add((topic, partition))
        if outcome == UNREADABLE:
            logger.warning("unreadable ledger record at %s[%d]@%d", topic, partition, offset)
        return outcome

    def checkpoint_all(self, producer: Producer, now_micros: int) -> int:
        written = 0
        with self._lock:
            for tenant in self._active_tenants():
                state = self._tenant(tenant)
                heads, _ = state.merged()
                cp = build_checkpoint(tenant, heads, state.prev_checkpoint, now_micros, self.key)
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=cp.to_text().encode(),
                                 headers=[(KIND_HEADER, b"checkpoint")], on_delivery=self._delivered)
                state.prev_checkpoint = cp.hash
                written += 1
        self.metrics.inc("agenttrail_checkpoints_total", written, help="signed checkpoints written")
        return written

    def retention_all(self, producer: Producer, now_micros: int) -> list[PurgeCommand]:
        """Anchor and purge the whole sessions that left every tenant's retention window."""
        commands: list[PurgeCommand] = []
        with self._lock:
            for tenant in self._active_tenants():
                state = self._tenant(tenant)
                policy = RetentionPolicy(self._retention_days(tenant))
                heads, last_ts = state.merged()
                planned = plan_purge(tenant, policy, now_micros, heads, last_ts, state.prev_anchor, self.key,
                                     state.anchored)
                if planned is None:
                    continue
                anchor, cmd = planned  # the anchor goes first: sinks purge only what is anchored
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=anchor.to_text().encode(),
                                 headers=[(KIND_HEADER, b"anchor")], on_delivery=self._delivered)
                producer.produce(CHECKPOINTS_TOPIC, key=tenant.encode(), value=cmd.to_json(),
                                 headers=[(KIND_HEADER, b"purge")], on_delivery=self._delivered)
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

    # -- snapshots -----------------------------------------------------------------------------
    def open_snapshots(self) -> None:
        """The snapshot topic and a transactional producer for it; snapshots are turned off (every
        start then folds every ledger) when either cannot be had."""
        if self.snapshot_every <= 0:
            return
        try:
            self._state_partitions = open_snapshot_topic(self.bootstrap, self.settings, CHECKPOINTER_STATE_TOPIC)
            producer = Producer(producer_config(self.bootstrap, **{
                "transactional.id": "agenttrail-checkpointer-state", "transaction.timeout.ms": 60000}))
            producer.init_transactions(60)  # fences a previous checkpointer's snapshot writes
            self._state_producer = producer
        except (BrokerError, KafkaException) as exc:
            logger.warning("checkpointer snapshots off: %s", exc)
            self.snapshot_every, self._state_partitions = 0, 0

    def snapshot_due(self, now_micros: int, *, notes_flushed: bool = False) -> int:
        """Snapshot the ledger partitions folded on since their last snapshot, at most every
        snapshot interval; the number written. Each snapshot is exactly the state's partition (its
        heads and the offset they were folded to): snapshots are taken in the folding thread.
        The notes state too when it changed and ``notes_flushed``: the caller's producer flushed
        every note (their delivery reports are in, so the ends are exactly what the state reflects)."""
        notes = notes_flushed and self._notes_dirty and not self._notes_lost
        if self._state_producer is None or not (self._dirty or notes):
            return 0
        now = time.monotonic()
        if now - self._snapshot_at < self.snapshot_every:
            return 0
        with self._lock:
            snaps = [Snapshot(topic, partition, state.offset, uuid.uuid4().hex, now_micros, state.rows())
                     for topic, partition in sorted(self._dirty)
                     if (state := self._partition(tenant_of_topic(topic) or "", partition)).offset > 0]
            noted = notes_snapshots(note_rows(self.tenants), self._note_ends, uuid.uuid4().hex, now_micros) if notes \
                else []
        written = 0
        try:
            if noted and write_snapshots(self._state_producer, noted, self._state_partitions,
                                         topic=CHECKPOINTER_STATE_TOPIC, rows=NOTE_ROWS, writer="checkpointer"):
                self._notes_dirty = False
                self.metrics.inc("agenttrail_checkpointer_notes_snapshots_total",
                                 help="notes snapshots the checkpointer wrote (one covers every tenant)")
            for group in transactions(snaps):
                if not write_snapshots(self._state_producer, group, self._state_partitions,
                                       topic=CHECKPOINTER_STATE_TOPIC, rows=HEAD_ROWS, writer="checkpointer"):
                    break
                self._dirty.difference_update((s.topic, s.partition) for s in group)
                written += len(group)
        except BrokerError as exc:  # fenced: another checkpointer writes snapshots now
            logger.error("checkpointer snapshots off: %s", exc)
            self._state_producer = None
        self._snapshot_at = now
        self.metrics.inc("agenttrail_checkpointer_snapshots_total", written,
                         help="ledger partitions whose heads the checkpointer snapshotted")
        return written

    # -- loop ----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Each ledger partition is followed from the offset its heads were folded to."""
        for tp in partitions:
            tenant = tenant_of_topic(tp.topic)
            state = self.tenants[tenant].parts.get(tp.partition) if tenant in self.tenants else None
            tp.offset = state.offset if state is not None and state.offset > 0 else OFFSET_BEGINNING
        consumer.assign(partitions)

    def run(self) -> None:
        self.open_snapshots()
        self.load_previous_notes()
        self.restore()
        if self._stop.is_set():
            return
        producer = Producer(producer_config(self.bootstrap))
        consumer = Consumer(consumer_config(self.bootstrap, f"agenttrail-checkpointer-{time.time_ns()}"))
        consumer.subscribe([LEDGER_PATTERN], on_assign=self._on_assign)
        interval = self.settings.checkpoint_interval_seconds
        next_cp = time.monotonic() + interval
        next_retention = time.monotonic() + min(interval, self.retention_interval)
        try:
            while not self._stop.is_set():
                msgs = consumer.consume(5000, 0.2)
                with self._lock:
                    for msg in msgs:
                        if msg.error() is None:
                            self._absorb(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                         dict(msg.headers() or []))
                now = time.monotonic()
                if now >= next_retention:
                    next_retention = now + self.retention_interval
                    self.retention_all(producer, time.time_ns() // 1000)
                if now >= next_cp:
                    next_cp = now + interval
                    self.checkpoint_all(producer, time.time_ns() // 1000)
                    flushed = producer.flush(30) == 0
                    self.snapshot_due(time.time_ns() // 1000, notes_flushed=flushed)
                producer.poll(0)
        finally:
            consumer.close()
            producer.flush(10)

