"""The checkpointer's notes state and its snapshots, without a broker: the snapshots restored plus
the notes after them are exactly a read of every note, and snapshots that cannot stand for the
topic (missing, mixed, beyond its end, disagreeing) are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_checkpointer import FakeProducer, checkpointer
from test_checkpointer_state import PARTITIONS, interleaved, partitions

from agenttrail.kafka.topics import CHECKPOINTER_STATE_TOPIC, CHECKPOINTS_TOPIC
from agenttrail.processors.checkpointer_notes import (
    ANCHORED_PER_ROW,
    NOTE_ROWS,
    NotesRefused,
    _Fresh,
    absorb_note,
    note_rows,
    notes_snapshots,
    restore_notes,
)
from agenttrail.processors.checkpointer_state import HEAD_ROWS
from agenttrail.processors.retention import DAY_MICROS
from agenttrail.processors.snapshot import CHUNK_BYTES, Snapshot, encode_snapshot, latest_snapshots

TENANTS = ("acme", "globex", "initech", "umbrella", "wayne")
HASH = bytes(range(32))


def fresh_fold(records: dict[int, list[tuple[bytes, bytes, dict[str, bytes]]]],
               starts: dict[int, int] | None = None, into: dict[str, _Fresh] | None = None) -> dict[str, _Fresh]:
    """Fold every partition's records from ``starts`` on (default: the beginning)."""
    tenants = into if into is not None else {}
    for p, msgs in records.items():
        for _, value, headers in msgs[(starts or {}).get(p, 0):]:
            absorb_note(lambda t: tenants.setdefault(t, _Fresh()), value, headers)
    return tenants


def as_tuples(tenants: dict[str, object]) -> dict[str, tuple[object, object, frozenset[str]]]:
    return {t: (s.prev_checkpoint, s.prev_anchor, frozenset(s.anchored))  # type: ignore[attr-defined]
            for t, s in tenants.items()}


def test_restored_notes_and_the_notes_after_them_equal_a_read_of_every_note(tmp_path: Path) -> None:
    records = interleaved(1500)
    parts = partitions(records)
    cp, state = checkpointer(tmp_path)
    cp.settings = cp.settings.with_overrides(retention_days=1)
    cp._note_ends = {p: 0 for p in range(PARTITIONS)}  # what a start that read the (empty) topic leaves
    for tenant in TENANTS:
        for p, msgs in parts.items():
            for msg in msgs:
                cp.absorb_ledger(f"agenttrail.{tenant}.ledger", p, *msg)
    ts = sorted(r.envelope.ts for r in records)
    out = FakeProducer()
    cuts: list[dict[int, Snapshot]] = []
    for n in range(6):  # rounds of anchors, purges and checkpoints, a notes snapshot after each
        now = ts[len(ts) * n // 6] + DAY_MICROS + 1
        cp.retention_all(out, now)
        cp.checkpoint_all(out, now)
        assert out.flush() == 0
        cp._snapshot_at -= 61
        cp.snapshot_due(now, notes_flushed=True)
        found = latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), NOTE_ROWS)
        cuts.append({p: s for (t, p), s in found.items() if t == CHECKPOINTS_TOPIC})
        assert {p: s.ledger_offset for p, s in cuts[-1].items()} == {p: out.ends.get(p, 0) for p in range(PARTITIONS)}
    assert cp.metrics.total("agenttrail_checkpointer_notes_snapshots_total") == 6
    kinds = {h["kind"] for h in out.headers}
    assert kinds == {b"checkpoint", b"anchor", b"purge"}
    written = {p: out.of_partition(CHECKPOINTS_TOPIC, p) for p in range(PARTITIONS)}
    full = as_tuples(fresh_fold(written))  # a read of every note
    assert full == as_tuples({t: cp.tenants[t] for t in TENANTS})
    assert all(full[t][2] for t in TENANTS) and all(full[t][1] for t in TENANTS)
    bounds = {p: (0, len(written[p])) for p in range(PARTITIONS)}
    for found in cuts:  # each snapshot: restored, then the notes after it
        tenants, starts = restore_notes(found, bounds)
        assert as_tuples(fresh_fold(written, starts, tenants)) == full
    # the heads snapshots are not taken for notes snapshots, nor the other way round
    assert all(t != CHECKPOINTS_TOPIC for t, _ in latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), HEAD_ROWS))


def test_no_notes_snapshot_unless_flushed_and_none_after_a_lost_note(tmp_path: Path) -> None:
    cp, state = checkpointer(tmp_path)
    cp._note_ends = {p: 0 for p in range(PARTITIONS)}  # what a start that read the topic leaves
    out = FakeProducer()
    cp.absorb_ledger("agenttrail.acme.ledger", 0, *partitions(interleaved(50))[0][0])
    cp.checkpoint_all(out, 1)
    assert cp.snapshot_due(1) == 1  # the heads, not the notes: no delivery report yet
    assert not latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), NOTE_ROWS)
    out.flush()
    cp._snapshot_at -= 61
    assert cp.snapshot_due(2, notes_flushed=False) == 0
    assert not latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), NOTE_ROWS)
    cp.snapshot_due(3, notes_flushed=True)
    first = latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), NOTE_ROWS)
    assert len(first) == PARTITIONS and sum(s.ledger_offset for s in first.values()) == 1
    out.failing.add(CHECKPOINTS_TOPIC)
    cp.checkpoint_all(out, 4)
    out.flush()
    cp._snapshot_at -= 61
    cp.snapshot_due(5, notes_flushed=True)  # a note was lost: the state is not the topic's
    assert latest_snapshots(state.of(CHECKPOINTER_STATE_TOPIC), NOTE_ROWS) == first


def snaps(ends: dict[int, int], rows: list[tuple[str, bytes | None, bytes | None, tuple[str, ...]]],
          sid: str = "n1") -> dict[int, Snapshot]:
    return {s.partition: s for s in notes_snapshots(rows, ends, sid, 1)}


def test_notes_snapshots_that_cannot_stand_for_the_topic_are_refused() -> None:
    rows = [(t, HASH, None, (f"{t}-s1",)) for t in TENANTS]
    ends = {0: 3, 1: 0, 2: 7}
    bounds = {0: (0, 3), 1: (0, 0), 2: (0, 9)}
    tenants, starts = restore_notes(snaps(ends, rows), bounds)
    assert starts == ends and set(tenants) == set(TENANTS)
    with pytest.raises(NotesRefused, match="none found"):
        restore_notes({}, bounds)
    with pytest.raises(NotesRefused, match="partitions"):  # one missing, or the topic has more now
        restore_notes({p: s for p, s in snaps(ends, rows).items() if p != 1}, bounds)
    with pytest.raises(NotesRefused, match="partitions"):
        restore_notes(snaps(ends, rows), {**bounds, 3: (0, 0)})
    mixed = {**snaps(ends, rows), 1: snaps(ends, rows, "n2")[1]}
    with pytest.raises(NotesRefused, match="snapshot ids"):
        restore_notes(mixed, bounds)
    with pytest.raises(NotesRefused, match="partition 2 at offset 7"):  # beyond its end: a recreated topic
        restore_notes(snaps(ends, rows), {**bounds, 2: (0, 4)})
    split = snaps(ends, rows)
    disagree = Snapshot(CHECKPOINTS_TOPIC, 0, 3, "n1", 1, (("acme", None, None, ("x",)),))
    with pytest.raises(NotesRefused, match="acme disagree"):
        restore_notes({**split, 0: disagree, 1: Snapshot(CHECKPOINTS_TOPIC, 1, 0, "n1", 1, (rows[0],))}, bounds)


def test_a_large_anchored_set_is_cut_over_rows_and_chunks() -> None:
    class State:
        prev_checkpoint, prev_anchor = HASH, HASH[::-1]
        anchored = {f"session-{n:07d}-" + "\u00e9" * 40 for n in range(3 * ANCHORED_PER_ROW + 5)}

    rows = note_rows({"acme": State(), "empty": type("E", (), {"prev_checkpoint": None, "prev_anchor": None,
                                                                "anchored": set()})()})
    assert len(rows) == 4 and {r[0] for r in rows} == {"acme"}
    written = notes_snapshots(rows, {0: 10}, "n1", 1)
    encoded = [m for s in written for m in encode_snapshot(s, NOTE_ROWS)]
    assert max(len(v) for _, v in encoded) < CHUNK_BYTES * 2 and len(encoded) > 2
    found = latest_snapshots(encoded, NOTE_ROWS)
    tenants, starts = restore_notes({p: s for (_, p), s in found.items()}, {0: (0, 10)})
    assert starts == {0: 10}
    assert as_tuples(tenants) == {"acme": (HASH, HASH[::-1], frozenset(State.anchored))}


def test_an_unreadable_purge_command_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """One corrupt record on the checkpoints topic must not stop every checkpointer start."""
    from agenttrail.processors.checkpointer import TenantHeads
    from agenttrail.processors.checkpointer_notes import KIND_HEADER, absorb_note

    tenants: dict[str, TenantHeads] = {}

    def tenant_of(tenant: str) -> TenantHeads:
        return tenants.setdefault(tenant, TenantHeads())

    for junk in (b"not json", b'{"tenant_id": "BAD TENANT", "session_ids": ["s"]}', b"[]"):
        absorb_note(tenant_of, junk, {KIND_HEADER: b"purge"})
    assert all(not state.anchored for state in tenants.values())
    assert sum("unreadable purge command" in r.getMessage() for r in caplog.records) == 3
