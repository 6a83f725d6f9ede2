"""A restarted checkpointer resumes from its snapshots instead of re-reading every ledger and every
note: the same heads and notes state as a full rebuild, only the ledger and the notes written after
the snapshots read, and its checkpoints still verify and chain across the restart. Broken snapshots
fall back to folding the partition, broken notes snapshots to reading every note."""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections import Counter
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer
from pipeline_support import read_all, wait_until

from agenttrail.config import Settings
from agenttrail.kafka.admin import TopicSpec, ensure_topics, system_topic_specs
from agenttrail.kafka.clients import producer_config
from agenttrail.kafka.topics import CHECKPOINTER_STATE_TOPIC, CHECKPOINTS_TOPIC, ledger_topic
from agenttrail.metrics import Metrics
from agenttrail.processors.chain_worker import chain_headers
from agenttrail.processors.checkpoint import Checkpoint, parse_note, verify_checkpoint
from agenttrail.processors.checkpointer import Checkpointer
from agenttrail.processors.checkpointer_notes import NOTE_ROWS
from agenttrail.processors.checkpointer_state import HEAD_ROWS, fold
from agenttrail.processors.service_key import ServiceKey
from agenttrail.processors.snapshot import Snapshot, encode_snapshot, latest_snapshots, manifest_key
from agenttrail.schemas.ledger import LedgerRecord, encode_ledger
from tests.unit.processors.test_checkpointer_state import interleaved, oracle

PARTITIONS = 4
FIRST, TOTAL = 2000, 3000


class OneTenant:
    """The registry view the checkpointer asks for active tenants: only ours gets checkpoints."""

    def __init__(self, tenant: str) -> None:
        self._tenants = [SimpleNamespace(tenant_id=tenant, status="active")]

    def tenants(self) -> list[SimpleNamespace]:
        return self._tenants


def ledger_of(tenant: str) -> list[LedgerRecord]:
    """Synthetic ledger records, sessions interleaved (each in order): batches cut through sessions."""
    return interleaved(TOTAL, seed=11, tenant=tenant, mean_session_events=25)


def partition_of(rec: LedgerRecord) -> int:
    return zlib.crc32(rec.envelope.session_id.encode()) % PARTITIONS


def produce(bootstrap: str, topic: str, records: list[LedgerRecord], start: int) -> None:
    """As the chain worker writes them (key = session), every 7th without its chain headers."""
    producer = Producer(producer_config(bootstrap))
    for n, rec in enumerate(records, start):
        producer.produce(topic, key=rec.envelope.session_id.encode(), value=encode_ledger(rec),
                         partition=partition_of(rec), headers=None if n % 7 == 0 else chain_headers(rec))
    assert producer.flush(30) == 0


def start(settings: Settings, tenant: str, key: ServiceKey,
          live: list[tuple[str, int, int]] | None = None) -> tuple[Checkpointer, threading.Thread]:
    """A checkpointer in a thread; ``live`` collects (topic, partition, offset) of what it folds
    while following the ledgers (after its restore)."""
    cp = Checkpointer(settings, settings.kafka_bootstrap or "", OneTenant(tenant), key, metrics=Metrics())
    if live is not None:
        absorb = cp._absorb

        def spy(topic: str, partition: int, offset: int, *rest: object) -> str:
            live.append((topic, partition, offset))
            return absorb(topic, partition, offset, *rest)  # type: ignore[arg-type]

        cp._absorb = spy  # type: ignore[method-assign]
    thread = threading.Thread(target=cp.run, name="checkpointer-test", daemon=True)
    thread.start()
    return cp, thread


def stop(cp: Checkpointer, thread: threading.Thread) -> None:
    cp.stop()
    thread.join(60)
    assert not thread.is_alive()


def notes_of(bootstrap: str, tenant: str) -> list[Checkpoint]:
    return [n for *_, k, v in read_all(bootstrap, [CHECKPOINTS_TOPIC], idle=0.5)
            if k == tenant.encode() and isinstance(n := parse_note(v), Checkpoint)]


def snapshots_of(bootstrap: str, ledger: str) -> dict[int, Snapshot]:
    found = latest_snapshots(((k, v) for *_, k, v in read_all(bootstrap, [CHECKPOINTER_STATE_TOPIC], idle=0.5)),
                             HEAD_ROWS)
    return {p: s for (t, p), s in found.items() if t == ledger}


def notes_snapshots_of(bootstrap: str) -> dict[int, Snapshot]:
    found = latest_snapshots(((k, v) for *_, k, v in read_all(bootstrap, [CHECKPOINTER_STATE_TOPIC], idle=0.5)),
                             NOTE_ROWS)
    return {p: s for (t, p), s in found.items() if t == CHECKPOINTS_TOPIC}


def notes_state(cp: Checkpointer) -> dict[str, tuple[bytes | None, bytes | None, frozenset[str]]]:
    return {t: (s.prev_checkpoint, s.prev_anchor, frozenset(s.anchored)) for t, s in cp.tenants.items()
            if s.prev_checkpoint is not None or s.prev_anchor is not None or s.anchored}


def test_a_restart_folds_only_the_ledger_after_the_snapshots(kafka_settings: Settings, caplog) -> None:  # type: ignore[no-untyped-def]
    bootstrap = kafka_settings.kafka_bootstrap or ""
    settings = kafka_settings.with_overrides(checkpoint_interval_seconds=1.0, checkpointer_snapshot_seconds=1.0,
                                             retention_days=36_500, partitions=PARTITIONS)
    tenant = f"cps-{uuid.uuid4().hex[:6]}"
    ledger = ledger_topic(tenant)
    ensure_topics(bootstrap, [*system_topic_specs(PARTITIONS, 36_500), TopicSpec(ledger, PARTITIONS, {})])
    records = ledger_of(tenant)
    first = Counter(partition_of(r) for r in records[:FIRST])
    later = Counter(partition_of(r) for r in records[FIRST:])
    assert len(first) == len(later) == PARTITIONS
    key = ServiceKey.generate("cp-test")

    # 1. a checkpointer folds the first records (half of them written while it runs) and snapshots them
    produce(bootstrap, ledger, records[: FIRST // 2], 0)
    live: list[tuple[str, int, int]] = []
    cp, thread = start(settings, tenant, key, live)
    try:
        assert wait_until(lambda: cp.restored is not None, 60)
        produce(bootstrap, ledger, records[FIRST // 2 : FIRST], FIRST // 2)
        assert wait_until(lambda: {p: s.ledger_offset for p, s in snapshots_of(bootstrap, ledger).items()}
                          == dict(first), 60), "no snapshot covers the first records"
        assert wait_until(lambda: sum(s.ledger_offset for s in notes_snapshots_of(bootstrap).values()) >= 3, 60), \
            "no notes snapshot covers three notes"
    finally:
        stop(cp, thread)
    assert cp.tenants[tenant].merged() == oracle(records[:FIRST])
    assert cp.restored is not None
    for p in range(PARTITIONS):  # every record folded, by the restore or then while following: none skipped
        restored = cp.restored.folded.get((ledger, p), 0)
        assert sorted({o for t, q, o in live if (t, q) == (ledger, p)}) == list(range(restored, first[p])), p

    # 2. more records while none runs; a new one restores and reads only those, and only the notes
    #    written after its last notes snapshot
    noted = notes_snapshots_of(bootstrap)
    assert noted and len({s.snapshot_id for s in noted.values()}) == 1
    notes_now = len(read_all(bootstrap, [CHECKPOINTS_TOPIC], idle=0.5))
    covered = sum(s.ledger_offset for s in noted.values())
    assert 3 <= covered <= notes_now
    produce(bootstrap, ledger, records[FIRST:], FIRST)
    full = Checkpointer(settings.with_overrides(checkpointer_snapshot_seconds=0), bootstrap, OneTenant(tenant), key,
                        metrics=Metrics())
    rebuilt = full.restore()  # the reference: every ledger folded from the beginning
    assert sum(n for (t, _), n in rebuilt.folded.items() if t == ledger) == TOTAL
    assert full.tenants[tenant].merged() == oracle(records)
    cp, thread = start(settings, tenant, key)
    try:
        assert wait_until(lambda: any(n.events == TOTAL for n in notes_of(bootstrap, tenant)), 60)
    finally:
        stop(cp, thread)
    assert cp.restored is not None
    assert {p: n for (t, p), n in cp.restored.folded.items() if t == ledger} == dict(later)
    assert cp.restored.from_snapshots >= PARTITIONS and cp.restored.refused == 0
    assert cp.metrics.total("agenttrail_checkpointer_records_folded_total") == sum(cp.restored.folded.values())
    assert cp.metrics.total("agenttrail_checkpointer_partitions_restored_total") == cp.restored.from_snapshots
    assert cp.metrics.total("agenttrail_checkpointer_restored") == 1
    assert full.metrics.total("agenttrail_checkpointer_restored") == 0
    assert cp.tenants[tenant].merged() == full.tenants[tenant].merged()
    assert cp.metrics.total("agenttrail_checkpointer_notes_restored") == 1
    assert cp.metrics.total("agenttrail_checkpointer_notes_read_total") == notes_now - covered

    # 3. every checkpoint verifies and the chain goes on across the restart; the last covers all heads
    notes = notes_of(bootstrap, tenant)
    previous = None
    for note in notes:
        verify_checkpoint(note, [key.verifier], previous=previous)
        previous = note
    verify_checkpoint(notes[-1], [key.verifier], expected_heads=oracle(records)[0])

    # 3b. the notes state restored plus the notes after it is a read of every note
    full.load_previous_notes()
    assert full.metrics.total("agenttrail_checkpointer_notes_restored") == 0
    all_notes = len(read_all(bootstrap, [CHECKPOINTS_TOPIC], idle=0.5))
    assert full.metrics.total("agenttrail_checkpointer_notes_read_total") == all_notes
    assert notes_state(full)[tenant][0] == notes[-1].hash
    resumed = Checkpointer(settings, bootstrap, OneTenant(tenant), key, metrics=Metrics())
    resumed.open_snapshots()
    resumed.load_previous_notes()
    assert resumed.metrics.total("agenttrail_checkpointer_notes_restored") == 1
    assert resumed.metrics.total("agenttrail_checkpointer_notes_read_total") < all_notes
    assert notes_state(resumed) == notes_state(full)

    # 4. broken snapshots: one a record does not continue (a wrong head), one beyond its ledger's
    #    end, one unreadable; each partition is folded whole, with a warning, and the heads are right
    tampered = {p: s for p, s in snapshots_of(bootstrap, ledger).items()}
    p0 = [(n, r.envelope.session_id.encode(), encode_ledger(r), dict(chain_headers(r)))
          for n, r in enumerate(r for r in records if partition_of(r) == 0)]
    cut = first[0]
    early = fold(p0[:cut])
    assert early is not None
    victim = next(m[1].decode() for m in p0[cut:] if m[1].decode() in early.heads)
    early.heads[victim] = (early.heads[victim][0], bytes(32))
    bad = [*encode_snapshot(Snapshot(ledger, 0, cut, "bad", 1, early.rows()), HEAD_ROWS),
           *encode_snapshot(Snapshot(ledger, 1, first[1] + later[1] + 5, "far", 1, tampered[1].sessions), HEAD_ROWS),
           (manifest_key(ledger, 2), b"{not json"), (manifest_key(CHECKPOINTS_TOPIC, 0), b"{not json")]
    producer = Producer(producer_config(bootstrap))
    for k, v in bad:
        producer.produce(CHECKPOINTER_STATE_TOPIC, key=k, value=v, partition=int(k.split(b":")[1]) % PARTITIONS)
    assert producer.flush(30) == 0
    again = Checkpointer(settings, bootstrap, OneTenant(tenant), key, metrics=Metrics())
    again.open_snapshots()
    with caplog.at_level(logging.WARNING):
        again.load_previous_notes()
        restored = again.restore()
    assert notes_state(again) == notes_state(full)  # every note read instead
    assert again.metrics.total("agenttrail_checkpointer_notes_read_total") == all_notes
    ours = {p: n for (t, p), n in restored.folded.items() if t == ledger}
    assert ours[1] == first[1] + later[1] and ours[2] == first[2] + later[2] and 3 not in ours
    assert ours[0] > first[0] + later[0]  # folded on from the bad snapshot until refused, then whole
    assert restored.refused >= 2
    assert again.tenants[tenant].merged() == full.tenants[tenant].merged()
    warned = caplog.text
    assert f"{ledger}[0] does not continue" in warned and f"{ledger}[1] at offset" in warned
    assert f"{ledger}:2 is incomplete or unreadable" in warned
    assert f"notes snapshots not used (snapshots of partitions {list(range(1, len(noted)))}" in warned


@pytest.fixture(autouse=True)
def _quiet_kafka_logs(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="agenttrail.processors.checkpointer")
    caplog.set_level(logging.INFO, logger="agenttrail.processors.checkpointer_notes")
