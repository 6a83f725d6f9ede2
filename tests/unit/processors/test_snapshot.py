"""Chain-state snapshots: format, newest-complete selection, and restore + fold == full fold."""

from __future__ import annotations

import json

from agenttrail.processors import snapshot as snap_mod
from agenttrail.processors.sequencer import SessionTable
from agenttrail.processors.snapshot import Snapshot, encode_snapshot, latest_snapshots
from agenttrail.processors.snapshot_io import fold
from agenttrail.schemas.ledger import decode_ledger, encode_ledger
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate

TOPIC = "agenttrail.acme.events"


def ledger(n: int = 3000) -> list[tuple[None, bytes]]:
    spec = SyntheticSpec(tenants=("acme",), events=n, mean_session_events=20, seed=5)
    return [(None, encode_ledger(r)) for r in generate(spec)]


def snapshot_of(values: list[tuple[None, bytes]], sid: str = "s1") -> Snapshot:
    table = fold(values)
    assert table is not None
    return Snapshot(TOPIC, 2, len(values), sid, 1, tuple(table.export()))


def test_restore_then_fold_equals_the_full_fold() -> None:
    values = ledger()
    full = fold(values)
    for cut in (0, 1, 777, 2999, 3000):
        resumed = fold(values[cut:], snapshot_of(values[:cut]))
        assert resumed is not None and full is not None
        assert resumed.export() == full.export(), cut


def test_a_snapshot_that_does_not_continue_into_the_ledger_is_refused() -> None:
    values = ledger()
    stale = snapshot_of(values[:1000])
    assert fold(values[1500:], stale) is None  # records 1000..1499 missing: heads do not link
    good = snapshot_of(values[:1000])
    next_session = decode_ledger(values[1000][1]).envelope.session_id
    rows = [(t, s, i, bytes(32) if s == next_session else h, q) for t, s, i, h, q in good.sessions]
    if next_session not in {r[1] for r in rows}:  # a new session: claim it already had one event
        rows.append(("acme", next_session, 1, bytes(32), {}))
    bad = Snapshot(TOPIC, 2, 1000, "x", 1, tuple(rows))  # one corrupted head
    assert fold(values[1000:], good) is not None
    assert fold(values[1000:], bad) is None


def test_encode_and_pick_the_newest_complete(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(snap_mod, "CHUNK_SESSIONS", 7)  # force several chunks
    values = ledger(800)
    old, new = snapshot_of(values[:400], "old"), snapshot_of(values, "new")
    messages = encode_snapshot(old) + encode_snapshot(new)
    assert len(encode_snapshot(new)) > 3
    found = latest_snapshots(messages)
    assert found[(TOPIC, 2)] == new
    # the newest manifest with one chunk missing (or from another snapshot): no snapshot at all
    newest = encode_snapshot(new)
    broken = encode_snapshot(old) + newest[1:]
    assert (TOPIC, 2) not in latest_snapshots(broken)
    mixed = [*newest[:-1], (newest[-1][0], json.dumps({**json.loads(newest[-1][1]), "snapshot": "old"}).encode())]
    assert (TOPIC, 2) not in latest_snapshots(mixed)
    assert latest_snapshots([(b"junk", b"{"), (None, b"x"), (newest[-1][0], b"not json")]) == {}
    # a tombstone on the manifest removes the snapshot
    assert (TOPIC, 2) not in latest_snapshots([*newest, (newest[-1][0], None)])


def test_an_empty_table_snapshots_and_restores() -> None:
    empty = Snapshot(TOPIC, 0, 0, "e", 1, ())
    assert latest_snapshots(encode_snapshot(empty))[(TOPIC, 0)] == empty
    assert SessionTable.restore(()).export() == []


def test_chunks_stay_well_under_a_megabyte_with_long_ids() -> None:
    long = "é" * 256  # the longest ids, with characters JSON may escape
    rows = tuple(("acme", f"{long}{i}", 7, bytes(32), {f"{long}{a}": a for a in range(3)}) for i in range(3000))
    snapshot = Snapshot(TOPIC, 1, 10, "big", 1, rows)
    messages = encode_snapshot(snapshot)
    assert len(messages) > 3
    assert max(len(value) for _, value in messages) < 1_000_000 * 0.8
    assert latest_snapshots(messages)[(TOPIC, 1)] == snapshot
