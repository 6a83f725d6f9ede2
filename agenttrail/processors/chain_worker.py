"""The verify+chain stage's I/O shell: raw events in, ledger records and dead letters out.

Why not a Faust table: a table's changelog and the ledger are two independent producer streams;
after a kill -9 they can disagree, and a table that is ahead of the ledger silently loses events.
Here the ledger *is* the changelog. Each batch is one Kafka transaction holding its ledger
records, its dead letters and its consumer offsets, so a crash either keeps all of it or none.
When a partition is assigned, its chain state is rebuilt by folding the ledger partition of the
same number (ledger and events share the key and the partition count), read `read_committed`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError, BrokerError, InvalidEvent
from agenttrail.kafka.admin import committed_offsets
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.partition_reader import read_partitions
from agenttrail.kafka.topics import CHAIN_SNAPSHOTS_TOPIC, DLQ_TOPIC, EVENTS_PATTERN, ledger_topic, tenant_of_topic
from agenttrail.metrics import METRICS, Metrics
from agenttrail.processors.dlq import DlqRecord
from agenttrail.processors.sequencer import Chained, Rejected, SessionTable
from agenttrail.processors.snapshot_io import (
    fold,
    ledger_end,
    load_snapshots,
    new_snapshot,
    open_snapshot_topic,
    write_snapshots,
)
from agenttrail.processors.verify import RegistryLike, Verified, VerifyPolicy, verify_events
from agenttrail.schemas.ledger import LedgerRecord, encode_ledger_from_raw

logger = logging.getLogger(__name__)

GROUP_ID = "agenttrail-chain"
REGISTRY_SYNC_EVERY_S = 2.0
# consume() returns when a batch is full or after this long: a light stream is chained (and its
# transaction committed) within ~50 ms instead of waiting for a full batch.
BATCH_WAIT_S = 0.05
# With a backlog (the broker already held more after the previous batch) a batch may wait this
# long to fill: a transaction per few hundred events costs ~40 % of the throughput.
BATCH_FILL_S = 0.3
REGISTRY_MISSES = frozenset({"unknown_agent", "unknown_key", "unknown_tenant"})


def now_micros() -> int:
    return time.time_ns() // 1000


def policy_from(settings: Settings) -> VerifyPolicy:
    return VerifyPolicy(max_event_bytes=settings.max_event_bytes,
                        clock_skew_micros=settings.clock_skew_seconds * 1_000_000)


def _behind(consumer: Consumer, msg: object, by: int = 500) -> bool:
    """The broker holds at least ``by`` more records after ``msg`` in its partition (from the
    client's cached watermark): a backlog, not just the next events of a live stream."""
    if msg.error() is not None:  # type: ignore[attr-defined]
        return False
    try:
        _, high = consumer.get_watermark_offsets(
            TopicPartition(msg.topic(), msg.partition()), cached=True)  # type: ignore[attr-defined]
    except KafkaException:
        return False
    return high - (msg.offset() + 1) >= by  # type: ignore[attr-defined]


def chain_headers(rec: LedgerRecord) -> list[tuple[str, bytes]]:
    """Where a record sits in its chain, readable without decoding it (the checkpointer's input)."""
    return [("chain_index", str(rec.chain_index).encode()), ("entry_hash", rec.entry_hash),
            ("ts", str(rec.envelope.ts).encode())]


class ChainWorker:
    """Consumes every tenant's events topic (pattern subscription) as one member of GROUP_ID."""

    def __init__(self, settings: Settings, bootstrap: str, registry: RegistryLike,
                 *, name: str = "w0",
                 batch_size: int = 2000, metrics: Metrics = METRICS,
                 on_registry_miss: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.registry = registry
        self.name = name
        self.batch_size = batch_size
        self.metrics = metrics
        self.policy = policy_from(settings)
        self.tables: dict[tuple[str, int], SessionTable] = {}
        self.on_registry_miss = on_registry_miss
        self._stop = threading.Event()
        self._last_sync = 0.0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._routes: dict[str, tuple[str, str]] = {}
        self._backlog = False
        self.snapshot_every = settings.chain_snapshot_seconds
        self._snapshot_partitions = 0
        self._dirty: set[tuple[str, int]] = set()
        self._snapshot_at: dict[tuple[str, int], float] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        # lz4, not the default zstd: the worker compresses every ledger record, and ledger records
        # are mostly hashes and signatures that compress little either way (~8 % more events/s).
        producer = Producer(producer_config(self.bootstrap, **{
            "transactional.id": f"agenttrail-chain-{self.name}",
            "transaction.timeout.ms": 30000, "linger.ms": 5, "compression.type": "lz4"}))
        producer.init_transactions(60)  # fences and aborts a previous incarnation's open transaction
        # Static membership: a worker restarted under the same name takes its partitions back at
        # once instead of the group waiting out the dead member's session.
        consumer = Consumer(consumer_config(self.bootstrap, GROUP_ID, **{
            "partition.assignment.strategy": "cooperative-sticky",
            "group.instance.id": f"agenttrail-chain-{self.name}", "session.timeout.ms": 10000,
            "max.poll.interval.ms": 300000, "fetch.wait.max.ms": 50}))
        self._producer, self._consumer = producer, consumer
        if self.snapshot_every > 0:
            self._snapshot_partitions = self._snapshot_topic()
        consumer.subscribe([EVENTS_PATTERN], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        logger.info("chain worker %s consuming %s", self.name, EVENTS_PATTERN)
        try:
            while not self._stop.is_set():
                msgs = self._next_batch(consumer)
                if msgs:
                    self._process_batch(msgs)
                else:  # idle: the tables are the committed fold, so a snapshot that was not yet
                    self._try_snapshot()  # due (or was skipped) at the last commit is taken now
        finally:
            try:
                consumer.close()
            finally:
                producer.flush(10)

    def _next_batch(self, consumer: Consumer) -> list[object]:
        """Up to batch_size messages. A live stream is taken as it comes (BATCH_WAIT_S); while
        there is a backlog (the broker held hundreds more after the previous batch) the batch may
        wait up to BATCH_FILL_S to fill, which it does at once when the backlog is real."""
        wait = BATCH_FILL_S if self._backlog else BATCH_WAIT_S
        msgs: list[object] = consumer.consume(num_messages=self.batch_size, timeout=wait)
        self._backlog = bool(msgs) and _behind(consumer, msgs[-1])
        return msgs

    def _snapshot_topic(self) -> int:
        """Make sure the snapshot topic exists; its partition count. Snapshots are turned off (a
        new owner then folds the whole ledger) if the topic cannot be made or seen."""
        try:
            return open_snapshot_topic(self.bootstrap, self.settings, CHAIN_SNAPSHOTS_TOPIC)
        except (BrokerError, KafkaException) as exc:
            logger.warning("chain snapshots off: %s", exc)
        self.snapshot_every = 0
        return 0

    # -- rebalance -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebuild the state of the assigned partitions: the newest snapshot of each (if any and if
        it is consistent with the ledger) plus the ledger records after it; else the whole ledger."""
        wanted = {(tp.topic, tp.partition): (ledger_topic(tenant), tp.partition)
                  for tp in partitions if (tenant := tenant_of_topic(tp.topic)) is not None}
        snapshots = load_snapshots(self.bootstrap, list(wanted), self._snapshot_partitions) \
            if self.snapshot_every > 0 else {}
        for source, snap in list(snapshots.items()):
            if snap.ledger_offset > ledger_end(consumer, wanted[source]):  # a ledger recreated since
                del snapshots[source]
        values = read_partitions(self.bootstrap, list(wanted.values()),
                                 {wanted[s]: snap.ledger_offset for s, snap in snapshots.items()})
        restored = 0
        for source, ledger in wanted.items():
            snap = snapshots.get(source)
            table = fold(values[ledger], snap)
            if table is None:
                logger.warning("snapshot of %s[%d] does not continue into its ledger: folding the whole ledger",
                               *source)
                values[ledger] = read_partitions(self.bootstrap, [ledger])[ledger]
                table = fold(values[ledger])
                snap = None
            restored += snap is not None
            self.tables[source] = table  # type: ignore[assignment]
            if snap is None and values[ledger]:
                self._dirty.add(source)  # a full fold: snapshot it at the next commit
                self._snapshot_at[source] = 0.0
            else:
                self._snapshot_at[source] = time.monotonic()
        folded = sum(len(v) for v in values.values())
        logger.info("assigned %d partitions (%d from snapshots): %d sessions, %d ledger records folded",
                    len(wanted), restored, sum(len(self.tables[s]) for s in wanted), folded)
        self.metrics.inc("agenttrail_chain_partitions_restored_total", restored,
                         help="partitions whose chain state came from a snapshot on assignment")
        self.metrics.inc("agenttrail_chain_ledger_records_folded_total", folded,
                         help="ledger records folded to rebuild chain state on assignment")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.tables.pop((tp.topic, tp.partition), None)
            self._dirty.discard((tp.topic, tp.partition))

    def _snapshot_due(self) -> None:
        """Right after a commit (the tables are exactly the fold of the committed ledger), snapshot
        the partitions that changed and whose last snapshot is older than the interval."""
        if self.snapshot_every <= 0 or not self._dirty:
            return
        now = time.monotonic()
        due = [s for s in self._dirty
               if s in self.tables and now - self._snapshot_at.get(s, 0.0) >= self.snapshot_every]
        if not due:
            return
        assert self._producer is not None and self._consumer is not None
        snaps = []
        for topic, partition in due:
            route = self._route(topic)
            if route is None:
                continue
            end = ledger_end(self._consumer, (route[1], partition))
            snaps.append(new_snapshot(topic, partition, end, self.tables[(topic, partition)], now_micros()))
        if write_snapshots(self._producer, snaps, self._snapshot_partitions):
            for source in due:
                self._snapshot_at[source] = now
                self._dirty.discard(source)
            self.metrics.inc("agenttrail_chain_snapshots_total", len(snaps), help="chain-state snapshots written")

    # -- the batch -----------------------------------------------------------------------------
    def _process_batch(self, msgs: list[object]) -> None:
        assert self._producer is not None and self._consumer is not None
        producer, consumer = self._producer, self._consumer
        offsets: dict[tuple[str, int], int] = {}
        counts = {"agenttrail_consumed_total": 0, "agenttrail_chained_total": 0, "agenttrail_seq_gaps_total": 0}
        now = now_micros()
        events = []
        for msg in msgs:
            err = msg.error()  # type: ignore[attr-defined]
            if err is None:
                events.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                logger.warning("consumer error: %s", err.str())
        producer.begin_transaction()
        try:
            answers = self._verify(events, now)
            for i, msg in enumerate(events):
                answer = answers[i]
                if type(answer) is not Verified and answer.reason in REGISTRY_MISSES and self._catch_up():  # type: ignore
                    answers[i:] = self._verify(events[i:], now)  # the registry moved: verify the rest again
                    answer = answers[i]
                self._handle(msg, answer, now, counts)
                offsets[(msg.topic(), msg.partition())] = msg.offset() + 1  # type: ignore[attr-defined]
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(60)
        except KafkaException as exc:
            self._recover(exc)
            return
        for name, value in counts.items():
            if value:
                self.metrics.inc(name, value)
        self._dirty.update(offsets)
        self._try_snapshot()

    def _try_snapshot(self) -> None:
        try:
            self._snapshot_due()
        except KafkaException as exc:  # the watermark query: a snapshot is a cache, try again later
            logger.warning("chain snapshot skipped: %s", exc)

    def _route(self, topic: str) -> tuple[str, str] | None:
        """(tenant, ledger topic) of an events topic, looked up once per topic."""
        route = self._routes.get(topic)
        if route is None:
            tenant = tenant_of_topic(topic)
            if tenant is None:
                return None
            route = self._routes[topic] = (tenant, ledger_topic(tenant))
        return route

    def _verify(self, msgs: list[object], now: int) -> list[Verified | InvalidEvent]:
        """Every check of ``verify_event`` on each message, the signatures verified as one batch."""
        tenants = []
        for msg in msgs:
            route = self._route(msg.topic())  # type: ignore[attr-defined]
            tenants.append(route[0] if route is not None else "")
        return verify_events([(m.value(), m.key()) for m in msgs],  # type: ignore[attr-defined]
                             tenants, self.registry, self.policy, now)

    def _handle(self, msg: object, answer: Verified | InvalidEvent, now: int, counts: dict[str, int]) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()  # type: ignore[attr-defined]
        value, key = msg.value(), msg.key()  # type: ignore[attr-defined]
        counts["agenttrail_consumed_total"] += 1
        route = self._route(topic)
        table = self.tables.get((topic, partition))
        if route is None or table is None:  # not ours (a revoke raced the batch): leave uncommitted
            raise KafkaException(KafkaError(KafkaError._STATE, f"{topic}[{partition}] is not assigned"))
        tenant, ledger = route
        outcome = table.chain(answer, partition, offset)
        if type(outcome) is Chained:
            rec = outcome.record
            self._producer.produce(ledger, value=encode_ledger_from_raw(value, rec), key=key,  # type: ignore[union-attr]
                                   partition=partition, headers=chain_headers(rec))
            counts["agenttrail_chained_total"] += 1
            if rec.seq_gap:
                counts["agenttrail_seq_gaps_total"] += 1
            return
        self._dead_letter(outcome, topic, partition, offset, value, now, tenant)  # type: ignore[arg-type]

    def _dead_letter(self, outcome: Rejected, topic: str, partition: int, offset: int, value: bytes | None,
                     now: int, tenant: str) -> None:
        dlq = DlqRecord.rejection(outcome.reason, outcome.detail, topic, partition, offset, value, now)
        self._producer.produce(DLQ_TOPIC, key=tenant.encode(), value=dlq.to_json())  # type: ignore[union-attr]
        self.metrics.inc("agenttrail_rejected_total", 1, help="events sent to the DLQ, by reason",
                         reason=outcome.reason)

    def _catch_up(self) -> bool:
        """The registry may be behind a just-registered agent or tenant: catch up, at most every
        REGISTRY_SYNC_EVERY_S (a flood of unknown keys must not cost a sync each)."""
        now = time.monotonic()
        if self.on_registry_miss is None or now - self._last_sync < REGISTRY_SYNC_EVERY_S:
            return False
        self._last_sync = now
        try:
            self.on_registry_miss()
        except AgentTrailError as exc:
            logger.warning("registry catch-up failed: %s", exc)
            return False
        return True

    def _recover(self, exc: KafkaException) -> None:
        """A failed transaction: abort it, then rebuild state and positions from committed data."""
        assert self._producer is not None and self._consumer is not None
        err: KafkaError = exc.args[0]
        if err.fatal():
            raise BrokerError(f"chain worker {self.name} was fenced or hit a fatal error: {err.str()}")
        logger.warning("transaction failed (%s): aborting and rebuilding from the ledger", err.str())
        try:
            self._producer.abort_transaction(60)
        except KafkaException as abort_exc:
            raise BrokerError(f"cannot abort transaction: {abort_exc}") from None
        assigned = self._consumer.assignment()
        committed = committed_offsets(self._consumer, assigned)
        self._on_revoke(self._consumer, assigned)
        self._on_assign(self._consumer, assigned)
        for tp in committed:
            self._consumer.seek(TopicPartition(tp.topic, tp.partition,
                                               tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self.metrics.inc("agenttrail_transaction_aborts_total")


def run_chain_worker(worker: ChainWorker) -> threading.Thread:
    def target() -> None:
        try:
            worker.run()
        except AgentTrailError as exc:
            logger.error("%s", exc)
        except Exception:
            logger.exception("chain worker crashed")

    thread = threading.Thread(target=target, name=f"chain-{worker.name}", daemon=True)
    thread.start()
    return thread
