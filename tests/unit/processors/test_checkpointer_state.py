"""The checkpointer's heads per ledger partition: restore + fold == full fold, and the snapshots
that must be refused (stale, skipping records, corrupt, incomplete, of another kind)."""

from __future__ import annotations

import json
import random
import zlib
from collections import defaultdict

import pytest

from agenttrail.processors import snapshot as snap_mod
from agenttrail.processors.chain_worker import chain_headers
from agenttrail.processors.checkpointer_state import (
    FOLDED,
    HEAD_ROWS,
    REFUSED,
    UNREADABLE,
    PartitionHeads,
    fold,
    merge_heads,
    usable,
)
from agenttrail.processors.snapshot import CHAIN_ROWS, Snapshot, encode_snapshot, latest_snapshots
from agenttrail.schemas.ledger import LedgerRecord, encode_ledger
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate

TOPIC = "agenttrail.acme.ledger"
PARTITIONS = 4
Msg = tuple[int, bytes | None, bytes | None, dict[str, bytes]]


def interleaved(n: int, seed: int = 5, tenant: str = "acme", mean_session_events: int = 20) -> list[LedgerRecord]:
    """Synthetic ledger records, sessions interleaved at random (each session still in order)."""
    spec = SyntheticSpec(tenants=(tenant,), events=n, mean_session_events=mean_session_events, seed=seed)
    queues: dict[str, list[LedgerRecord]] = defaultdict(list)
    for rec in generate(spec):
        queues[rec.envelope.session_id].append(rec)
    rng, out = random.Random(seed), []
    live = [q[::-1] for q in queues.values()]
    while live:
        queue = rng.choice(live)
        out.append(queue.pop())
        if not queue:
            live.remove(queue)
    return out


def partitions(records: list[LedgerRecord]) -> dict[int, list[Msg]]:
    """Ledger partitions as the chain worker writes them (one session, one partition), every 7th
    record without its chain headers (folded by decoding it)."""
    out: dict[int, list[Msg]] = {p: [] for p in range(PARTITIONS)}
    for n, rec in enumerate(records):
        session = rec.envelope.session_id
        part = out[zlib.crc32(session.encode()) % PARTITIONS]
        headers = {} if n % 7 == 0 else dict(chain_headers(rec))
        part.append((len(part), session.encode(), encode_ledger(rec), headers))
    return out


def oracle(records: list[LedgerRecord]) -> tuple[dict[str, tuple[int, bytes]], dict[str, int]]:
    """Heads and newest ts computed straight from the records, not by the code under test."""
    heads: dict[str, tuple[int, bytes]] = {}
    last_ts: dict[str, int] = {}
    for rec in records:
        session = rec.envelope.session_id
        if rec.chain_index + 1 > heads.get(session, (0, b""))[0]:
            heads[session] = (rec.chain_index + 1, rec.entry_hash)
        last_ts[session] = max(last_ts.get(session, 0), rec.envelope.ts)
    return heads, last_ts


def snapshot_at(msgs: list[Msg], cut: int, partition: int, sid: str = "s1") -> Snapshot:
    """The snapshot a checkpointer would write having folded msgs[:cut], read back from its messages."""
    state = fold(msgs[:cut])
    assert state is not None and state.offset == cut
    written = Snapshot(TOPIC, partition, state.offset, sid, 1, state.rows())
    return latest_snapshots(encode_snapshot(written, HEAD_ROWS), HEAD_ROWS)[(TOPIC, partition)]


def continuing(msgs: list[Msg], cut: int, skip_to: int) -> set[bytes | None]:
    """Sessions with records both in [cut, skip_to) and after skip_to."""
    gap = {m[1] for m in msgs[cut:skip_to]}
    return gap & {m[1] for m in msgs[skip_to:]}


@pytest.fixture(scope="module")
def ledger() -> tuple[list[LedgerRecord], dict[int, list[Msg]]]:
    records = interleaved(3000)
    return records, partitions(records)


def test_restore_then_fold_equals_the_full_fold_at_every_cut(ledger) -> None:  # type: ignore[no-untyped-def]
    records, parts = ledger
    for p, msgs in parts.items():
        full = fold(msgs)
        assert full is not None and full.offset == len(msgs)
        for cut in sorted({0, 1, 2, len(msgs) // 3, len(msgs) // 2, len(msgs) - 1, len(msgs)}):
            resumed = fold(msgs[cut:], snapshot_at(msgs, cut, p))
            assert resumed is not None, (p, cut)
            assert resumed.same_fold(full) and resumed.offset == full.offset, (p, cut)
    # and the tenant's heads (the union over partitions) are those of the records themselves
    cuts = {p: len(msgs) // 2 for p, msgs in parts.items()}
    resumed_all = [fold(msgs[cuts[p]:], snapshot_at(msgs, cuts[p], p)) for p, msgs in parts.items()]
    assert merge_heads(r for r in resumed_all if r is not None) == oracle(records)


def test_folding_a_record_twice_is_harmless_but_a_skipped_one_is_refused(ledger) -> None:  # type: ignore[no-untyped-def]
    _, parts = ledger
    msgs = parts[1]
    full = fold(msgs)
    assert full is not None
    cut, skip_to = 300, 380
    assert continuing(msgs, cut, skip_to), "the test needs a session that spans the gap"
    # a snapshot that says less than it holds (its offset lags): records folded twice, same state
    lagging = snapshot_at(msgs, cut, 1)
    resumed = fold(msgs[cut - 50:], Snapshot(TOPIC, 1, cut - 50, "lag", 1, lagging.sessions))
    assert resumed is not None and resumed.same_fold(full)
    # a snapshot that claims more than it holds: the records in between would be lost
    stale = snapshot_at(msgs, cut, 1)
    assert fold(msgs[skip_to:], stale) is None


def test_a_corrupt_or_incomplete_snapshot_is_refused(ledger) -> None:  # type: ignore[no-untyped-def]
    _, parts = ledger
    msgs = parts[2]
    cut = len(msgs) // 2
    good = snapshot_at(msgs, cut, 2)
    assert fold(msgs[cut:], good) is not None
    after = {m[1].decode() for m in msgs[cut:] if m[1]}
    victim = next(row for row in good.sessions if row[0] in after)  # a session that goes on after the cut
    others = tuple(row for row in good.sessions if row is not victim)
    wrong_head = (*victim[:2], bytes(32), victim[3])
    shorter = (victim[0], victim[1] - 1, victim[2], victim[3])
    for rows in ((*others, wrong_head), (*others, shorter), others):  # a bad head, a bad length, a lost session
        assert fold(msgs[cut:], Snapshot(TOPIC, 2, cut, "bad", 1, rows)) is None


def test_a_garbage_record_is_skipped_alike_with_and_without_a_snapshot(ledger) -> None:  # type: ignore[no-untyped-def]
    _, parts = ledger
    msgs = list(parts[3])
    msgs.insert(10, (10, b"s-junk", b"\x00garbage", {}))
    msgs = [(n, k, v, h) for n, (_, k, v, h) in enumerate(msgs)]
    state = PartitionHeads()
    assert state.fold_record(*msgs[10]) == UNREADABLE and state.offset == 11
    full = fold(msgs)
    resumed = fold(msgs[5:], snapshot_at(msgs, 5, 3))
    assert full is not None and resumed is not None and resumed.same_fold(full)
    assert "s-junk" not in full.heads


def test_the_checked_fold_refuses_without_changing_anything(ledger) -> None:  # type: ignore[no-untyped-def]
    _, parts = ledger
    msgs = parts[0]
    state = PartitionHeads.restore(snapshot_at(msgs, 100, 0))
    before = (dict(state.heads), dict(state.last_ts), state.offset)
    gap = next(m for m in msgs[101:] if m[1] not in {x[1] for x in msgs[:101]} and m[3]
               and m[3]["chain_index"] != b"0")  # a session whose first record is missing
    assert state.fold_record(*gap, checked=True) == REFUSED
    assert (state.heads, state.last_ts, state.offset) == before
    assert state.fold_record(*msgs[100], checked=True) == FOLDED and state.offset == 101


def test_snapshot_offsets_outside_the_ledger_are_refused() -> None:
    snap = Snapshot(TOPIC, 0, 500, "s", 1, ())
    assert usable(snap, 0, 500) and usable(snap, 500, 900) and usable(snap, 0, 10_000)
    assert not usable(snap, 0, 499)  # the ledger ends before it: recreated since
    assert not usable(snap, 501, 900)  # records after it were deleted: a fold would not be the ledger's


def test_encode_pick_the_newest_complete_and_never_another_kind(ledger, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(snap_mod, "CHUNK_SESSIONS", 7)  # force several chunks
    _, parts = ledger
    msgs = parts[0]
    full, half = fold(msgs), fold(msgs[: len(msgs) // 2])
    assert full is not None and half is not None
    old = Snapshot(TOPIC, 0, half.offset, "old", 1, half.rows())
    new = Snapshot(TOPIC, 0, full.offset, "new", 2, full.rows())
    newest = encode_snapshot(new, HEAD_ROWS)
    assert len(newest) > 3
    assert latest_snapshots(encode_snapshot(old, HEAD_ROWS) + newest, HEAD_ROWS)[(TOPIC, 0)] == new
    assert PartitionHeads.restore(new).same_fold(full)
    # a chunk missing, a chunk of another snapshot, a chunk that is not JSON, a bad row: no snapshot
    mixed = [*encode_snapshot(old, HEAD_ROWS)[:2], *newest[2:]]
    bad_row = json.loads(newest[0][1])
    bad_row["sessions"][0][2] = "abcd"  # a head of 2 bytes
    for broken in (newest[1:], mixed, [(newest[0][0], b"{"), *newest[1:]],
                   [(newest[0][0], json.dumps(bad_row).encode()), *newest[1:]]):
        assert (TOPIC, 0) not in latest_snapshots(broken, HEAD_ROWS)
    # a heads snapshot is never restored as a chain one, nor the other way round
    assert latest_snapshots(newest) == {}
    chain = Snapshot("agenttrail.acme.events", 0, 3, "c", 1, (("acme", "s", 3, bytes(32), {"a": 2}),))
    assert latest_snapshots(encode_snapshot(chain), HEAD_ROWS) == {}
    assert latest_snapshots(encode_snapshot(chain))[("agenttrail.acme.events", 0)] == chain


def test_long_session_ids_keep_chunks_well_under_a_megabyte() -> None:
    rows = tuple((f"{'é' * 256}{i}", 7, bytes(32), 10**18) for i in range(20_000))
    messages = encode_snapshot(Snapshot(TOPIC, 1, 10, "big", 1, rows), HEAD_ROWS)
    assert len(messages) > 3
    assert max(len(value) for _, value in messages) < 1_000_000 * 0.8
    assert latest_snapshots(messages, HEAD_ROWS)[(TOPIC, 1)].sessions == rows


def test_merge_keeps_the_maxima_when_a_session_spans_partitions() -> None:
    a = PartitionHeads({"s": (3, b"a" * 32), "t": (1, b"t" * 32)}, {"s": 50, "t": 7})
    b = PartitionHeads({"s": (5, b"b" * 32)}, {"s": 40})
    assert merge_heads([a, b]) == ({"s": (5, b"b" * 32), "t": (1, b"t" * 32)}, {"s": 50, "t": 7})
    assert merge_heads([b, a]) == merge_heads([a, b])


def test_chain_rows_are_written_as_before() -> None:
    snap = Snapshot("agenttrail.acme.events", 0, 3, "c", 1, (("acme", "s", 3, bytes(32), {"a": 2}),))
    chunk, manifest = encode_snapshot(snap)
    assert json.loads(chunk[1])["sessions"] == [["acme", "s", 3, "00" * 32, {"a": 2}]]
    assert json.loads(manifest[1])["rows"] == CHAIN_ROWS.name
    legacy = {k: v for k, v in json.loads(manifest[1]).items() if k != "rows"}  # written before row formats
    assert latest_snapshots([chunk, (manifest[0], json.dumps(legacy).encode())])[("agenttrail.acme.events", 0)] == snap
