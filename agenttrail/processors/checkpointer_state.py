"""The checkpointer's state per ledger partition, and its snapshots: the pure core (no I/O).

The checkpointer signs, per tenant, every session's head (chain length, entry hash); retention
needs every session's newest ts. Both are a fold over the tenant's ledger topic, and since a
session's records all go to one ledger partition (ledger and events are keyed by session), the
fold splits per ledger partition: `PartitionHeads` is the fold of one ledger partition's records
[0, offset), and a tenant's heads are the union of its partitions' (`merge_heads`).

Why per partition, like the chain worker's snapshots (and not one snapshot of everything): the
snapshot of a partition is then exactly "the fold of ledger records [0, ledger_offset)", the same
invariant and the same checked fold on restore as `processors.snapshot`; and only the partitions
that changed since the last snapshot are written again, not every session of every tenant.

Why its own compacted topic (`agenttrail.checkpointer-state`) rather than more keys in
`agenttrail.chain-snapshots`: the keys would not collide (ledger vs events topics), but every chain
worker that takes a partition over reads whole snapshot-topic partitions and would parse the
checkpointer's manifests too; the two caches have different writers, readers and sizes. The
format is the shared one (`processors.snapshot`: chunked by count and size, manifest last, one
transaction), with rows of `HEAD_ROWS`: ``[session, length, head hex, newest ts]``.

Folding a record twice is harmless (a head is the longest chain seen, a ts the newest), so a
snapshot may only ever lag; what must never happen is skipping a record. A restored partition is
therefore checked as it is folded on (`absorb_checked`): a new session must start at index 0, a
known one continue at its length (the first time, from the snapshot's very head). Anything else
refuses the snapshot and the caller folds the whole partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agenttrail.errors import AgentTrailError
from agenttrail.processors.snapshot import RowFormat, Snapshot
from agenttrail.schemas.ledger import decode_ledger

HeadRow = tuple[str, int, bytes, int]  # (session, chain length, head entry hash, newest ts or 0)
CHAIN_HEADERS = frozenset({"chain_index", "entry_hash", "ts"})  # written by the chain worker

# what folding one record did
FOLDED = "folded"
UNREADABLE = "unreadable"  # skipped, as in every fold (the offset still moves past it)
REFUSED = "refused"  # it does not continue the snapshot: nothing changed, the snapshot is not to be trusted
ROWS_PER_TRANSACTION = 200_000  # snapshots are written in transactions of about this many sessions


def _dump(row: HeadRow) -> list[object]:
    session, length, head, ts = row
    return [session, length, head.hex(), ts]


def _parse(raw: Any) -> HeadRow:
    session, length, head, ts = raw
    row = (str(session), int(length), bytes.fromhex(head), int(ts))
    if row[1] < 1 or len(row[2]) != 32 or row[3] < 0:
        raise ValueError(f"bad heads row {raw!r}")
    return row


def _size(row: HeadRow) -> int:
    # worst case JSON: [ "session" (each character escaped, 6 bytes) , 20 digits , 64 hex , 20 digits ]
    return 120 + 6 * len(row[0])


HEAD_ROWS = RowFormat("heads", _dump, _parse, _size)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the checkpointer takes from one ledger record."""

    tenant: str | None  # None: the caller's (the ledger topic's) tenant
    session: str
    length: int  # chain_index + 1
    entry_hash: bytes
    ts: int


def entry_of(value: bytes | None, session: str | None, headers: Mapping[str, bytes]) -> Entry:
    """From the chain headers when present (no decode), else from the record itself."""
    if session and headers.keys() >= CHAIN_HEADERS:
        return Entry(None, session, int(headers["chain_index"]) + 1, headers["entry_hash"], int(headers["ts"]))
    rec = decode_ledger(value or b"")
    env = rec.envelope
    return Entry(env.tenant_id, env.session_id, rec.chain_index + 1, rec.entry_hash, env.ts)


def prev_hash_of(value: bytes | None) -> bytes:
    return decode_ledger(value or b"").prev_hash


@dataclass(slots=True)
class PartitionHeads:
    """The fold of one ledger partition's records [0, offset)."""

    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # session -> (length, head)
    last_ts: dict[str, int] = field(default_factory=dict)  # session -> newest ts (> 0 only)
    offset: int = 0  # the next ledger offset to fold
    unconfirmed: set[str] = field(default_factory=set)  # heads from a snapshot no record has continued yet

    def absorb(self, entry: Entry) -> None:
        current = self.heads.get(entry.session)
        if current is None or current[0] < entry.length:
            self.heads[entry.session] = (entry.length, entry.entry_hash)
        if entry.ts > self.last_ts.get(entry.session, 0):
            self.last_ts[entry.session] = entry.ts

    def absorb_checked(self, entry: Entry, prev_hash: Callable[[], bytes]) -> bool:
        """``absorb`` for records folded on top of a snapshot: False (nothing changed) when the
        record does not continue the state — the snapshot then cannot be trusted. ``prev_hash``
        (it decodes the record) is asked only for a session's first record after the snapshot."""
        current = self.heads.get(entry.session)
        if current is None:
            ok = entry.length == 1
        elif entry.length <= current[0]:
            ok = True  # already folded: the snapshot was taken later than its offset says, harmless
        elif entry.length == current[0] + 1:
            ok = entry.session not in self.unconfirmed or prev_hash() == current[1]
            self.unconfirmed.discard(entry.session)
        else:
            ok = False  # a gap: records between the snapshot and here were skipped
        if ok:
            self.absorb(entry)
        return ok

    def fold_record(self, offset: int, key: bytes | None, value: bytes | None, headers: Mapping[str, bytes],
                    *, checked: bool = False) -> str:
        """Fold the ledger record at ``offset`` (offsets in order); ``checked``: on top of a
        snapshot (`absorb_checked`). FOLDED, UNREADABLE or REFUSED."""
        try:
            entry = entry_of(value, key.decode() if key else None, headers)
        except (AgentTrailError, ValueError):
            self.offset = offset + 1
            return UNREADABLE
        if checked:
            try:
                ok = self.absorb_checked(entry, lambda: prev_hash_of(value))
            except AgentTrailError:  # its headers read but not its bytes: cannot confirm the snapshot
                ok = False
            if not ok:
                return REFUSED
        else:
            self.absorb(entry)
        self.offset = offset + 1
        return FOLDED

    def rows(self) -> tuple[HeadRow, ...]:
        """Every session as a snapshot row, in a stable order."""
        last_ts = self.last_ts
        return tuple((s, n, h, last_ts.get(s, 0)) for s, (n, h) in sorted(self.heads.items()))

    @classmethod
    def restore(cls, snapshot: Snapshot) -> PartitionHeads:
        state = cls(offset=snapshot.ledger_offset)
        for session, length, head, ts in snapshot.sessions:
            state.heads[session] = (length, head)
            if ts > 0:
                state.last_ts[session] = ts
        state.unconfirmed = set(state.heads)
        return state

    def same_fold(self, other: PartitionHeads) -> bool:
        """The same heads and newest ts (what a snapshot must restore), whatever the offsets."""
        return self.heads == other.heads and self.last_ts == other.last_ts


def usable(snapshot: Snapshot, low: int, high: int) -> bool:
    """A snapshot can continue into a ledger partition holding offsets [low, high) only if its
    offset lies within: beyond the end, the ledger was recreated since; below the start, records
    after the snapshot were deleted (retention) and the fold would not be the ledger's."""
    return low <= snapshot.ledger_offset <= high


def fold(records: Iterable[tuple[int, bytes | None, bytes | None, Mapping[str, bytes]]],
         snapshot: Snapshot | None = None) -> PartitionHeads | None:
    """The state after ``records`` ((offset, key, value, headers) of one ledger partition, in
    offset order, from the snapshot's offset on) on top of ``snapshot`` (or from nothing). None
    when a record does not continue the snapshot."""
    state = PartitionHeads() if snapshot is None else PartitionHeads.restore(snapshot)
    for offset, key, value, headers in records:
        if state.fold_record(offset, key, value, headers, checked=snapshot is not None) == REFUSED:
            return None
    return state


def merge_heads(parts: Iterable[PartitionHeads]) -> tuple[dict[str, tuple[int, bytes]], dict[str, int]]:
    """A tenant's heads and newest ts over its ledger partitions. Sessions do not span partitions,
    so this is a union; should one ever (a changed partition count), the longest head and the
    newest ts win, as in a fold of everything."""
    parts = list(parts)
    heads: dict[str, tuple[int, bytes]] = {}
    last_ts: dict[str, int] = {}
    sizes = 0
    for part in parts:
        heads.update(part.heads)
        last_ts.update(part.last_ts)
        sizes += len(part.heads)
    if sizes == len(heads):
        return heads, last_ts
    heads, last_ts = {}, {}
    for part in parts:  # the rare overlap: keep the maxima
        for session, head in part.heads.items():
            if session not in heads or heads[session][0] < head[0]:
                heads[session] = head
        for session, ts in part.last_ts.items():
            last_ts[session] = max(ts, last_ts.get(session, 0))
    return heads, last_ts


def transactions(snaps: list[Snapshot]) -> list[list[Snapshot]]:
    """Consecutive snapshots, grouped into transactions of about ROWS_PER_TRANSACTION sessions."""
    groups: list[list[Snapshot]] = []
    rows = 0
    for snap in snaps:
        if not groups or (rows and rows + len(snap.sessions) > ROWS_PER_TRANSACTION):
            groups.append([])
            rows = 0
        groups[-1].append(snap)
        rows += len(snap.sessions)
    return groups
