"""The per-session hash chain: a pure core on bytes (no envelope types, no I/O).

    leaf       = SHA-256(signing_bytes)
    entry_hash = SHA-256(0x00 ‖ prev_hash ‖ leaf)        genesis prev_hash = 32 zero bytes

`ChainState(index, head)` is the state kept per (tenant, session): `index` is the next chain index
to assign (= the chain length), `head` the last entry hash. `extend` is a deterministic function of
(state, signing bytes), so a redelivered event re-emits the identical record.

`verify_chain` recomputes a sequence of entries and reports the first bad one exactly; it raises
nothing on bad data. It starts from genesis, from a signed anchor (`ChainState`), or, with
`anchor=None`, from the first entry itself ("suffix mode", e.g. after a retention purge): a suffix
is authentic only if its final head matches a signed head, so pass `expected_head` from a
checkpoint or retention anchor. Because every head commits to all earlier entries, a matching head
authenticates the whole suffix, including the unsigned starting `prev_hash`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256

from agenttrail.errors import VerificationError

HASH_SIZE = 32
GENESIS_HEAD = bytes(HASH_SIZE)
ENTRY_PREFIX = b"\x00"


@dataclass(frozen=True, slots=True)
class ChainState:
    """`index`: next chain index to assign (the chain length); `head`: last entry hash."""

    index: int = 0
    head: bytes = GENESIS_HEAD


GENESIS = ChainState(0, GENESIS_HEAD)

# (chain_index, prev_hash, entry_hash, signing_bytes): what a ledger record holds.
Entry = tuple[int, bytes, bytes, bytes]


def leaf_hash(signing_bytes: bytes) -> bytes:
    return sha256(signing_bytes).digest()


def entry_hash(prev_hash: bytes, leaf: bytes) -> bytes:
    return sha256(ENTRY_PREFIX + prev_hash + leaf).digest()


def next_head(prev_hash: bytes, signing_bytes: bytes) -> bytes:
    """The entry hash of the event with ``signing_bytes`` appended after ``prev_hash``."""
    return sha256(ENTRY_PREFIX + prev_hash + sha256(signing_bytes).digest()).digest()


def extend(state: ChainState, signing_bytes: bytes) -> tuple[int, bytes, bytes, ChainState]:
    """Append one event: returns (chain_index, prev_hash, entry_hash, new_state)."""
    prev = state.head
    digest = next_head(prev, signing_bytes)
    index = state.index
    return index, prev, digest, ChainState(index + 1, digest)


class Failure(StrEnum):
    INDEX_GAP = "index_gap"  # an index was skipped (missing entries)
    INDEX_ORDER = "index_out_of_order"  # index repeats or goes back (duplicate / reordered / fork)
    PREV_HASH = "prev_hash_mismatch"  # does not link to the previous entry (or the anchor)
    ENTRY_HASH = "entry_hash_mismatch"  # stored entry_hash differs from the recomputed one
    HEAD_MISMATCH = "head_mismatch"  # the chain does not end at the expected (signed) head
    MALFORMED = "malformed"  # not a (int, bytes, bytes, bytes) entry


@dataclass(frozen=True, slots=True)
class ChainFailure:
    kind: Failure
    position: int  # 0-based position in the verified sequence (== number of entries before it)
    chain_index: int | None  # the record's own chain_index (None if unreadable)
    expected: str  # hex digest or decimal index
    actual: str

    @property
    def message(self) -> str:
        return (
            f"{self.kind.value} at chain_index {self.chain_index} (position {self.position}): "
            f"expected {self.expected}, got {self.actual}"
        )

    def where(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "position": self.position,
            "chain_index": self.chain_index,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True, slots=True)
class ChainReport:
    start: ChainState  # the state verification started from (anchor, genesis or first entry's prev)
    state: ChainState  # the state after the last good entry
    checked: int  # entries that verified
    failure: ChainFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def raise_for_failure(self, **where: object) -> None:
        """Raise VerificationError (where = the failure plus the caller's context) unless ok."""
        if self.failure is not None:
            raise VerificationError(self.failure.message, {**where, **self.failure.where()})


def _fail(
    start: ChainState, state: ChainState, position: int, kind: Failure, index: int | None, exp: str, act: str
) -> ChainReport:
    return ChainReport(start, state, position, ChainFailure(kind, position, index, exp, act))


def verify_chain(
    entries: Iterable[Entry],
    anchor: ChainState | None = GENESIS,
    expected_head: ChainState | None = None,
) -> ChainReport:
    """Recompute `entries` (ordered by chain_index) from `anchor`; report the first bad record.

    `anchor=None` starts from the first entry's own (chain_index, prev_hash) — then the result is
    only meaningful together with an `expected_head` (or a head compared by the caller).
    """
    start = anchor
    index = anchor.index if anchor is not None else 0
    head = anchor.head if anchor is not None else GENESIS_HEAD
    position = 0
    entry: object = None
    try:
        for entry in entries:
            idx, prev, stored, signing = entry  # type: ignore[misc]
            if start is None:
                if type(idx) is not int or idx < 0 or type(prev) is not bytes or len(prev) != HASH_SIZE:
                    raise TypeError("first entry")
                start = ChainState(idx, prev)
                index, head = idx, prev
            if idx != index:
                if type(idx) is not int:
                    raise TypeError("chain_index")
                kind = Failure.INDEX_GAP if idx > index else Failure.INDEX_ORDER
                return _fail(start, ChainState(index, head), position, kind, idx, str(index), str(idx))
            if prev != head:
                return _fail(
                    start, ChainState(index, head), position, Failure.PREV_HASH, idx, head.hex(), _hex(prev)
                )
            digest = sha256(ENTRY_PREFIX + head + sha256(signing).digest()).digest()
            if stored != digest:
                return _fail(
                    start, ChainState(index, head), position, Failure.ENTRY_HASH, idx, digest.hex(),
                    _hex(stored),
                )
            head = digest
            index += 1
            position += 1
    except (TypeError, ValueError):
        return _fail(
            start or GENESIS, ChainState(index, head), position, Failure.MALFORMED, _index_of(entry),
            "(int, bytes, bytes, bytes)", _describe(entry),
        )
    # An empty suffix starts (and ends) at genesis: with a non-genesis expected head it fails closed.
    start = start or GENESIS
    state = ChainState(index, head)
    if expected_head is not None and state != expected_head:
        return _fail(
            start, state, position, Failure.HEAD_MISMATCH, index - 1 if position else None,
            f"{expected_head.index}:{expected_head.head.hex()}", f"{state.index}:{state.head.hex()}",
        )
    return ChainReport(start, state, position)


def _index_of(entry: object) -> int | None:
    try:
        first = entry[0]  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return None
    return first if type(first) is int else None


def _describe(entry: object) -> str:
    if isinstance(entry, tuple | list):
        return "(" + ", ".join(type(v).__name__ for v in entry) + ")"
    return type(entry).__name__


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else repr(value)


def bench_chain(n: int = 200_000, event_size: int = 300) -> dict[str, float]:
    """Micro-benchmark for `agenttrail bench`: pure extend loop and verify_chain throughput."""
    payloads = [i.to_bytes(8, "big") + bytes(event_size - 8) for i in range(n)]
    state = GENESIS
    records: list[Entry] = []
    append = records.append
    t0 = time.perf_counter()
    for signing in payloads:
        index, prev, digest, state = extend(state, signing)
        append((index, prev, digest, signing))
    t1 = time.perf_counter()
    report = verify_chain(records)
    t2 = time.perf_counter()
    report.raise_for_failure(context="bench_chain")
    return {
        "events": float(n),
        "event_bytes": float(event_size),
        "extend_per_s": n / (t1 - t0),
        "verify_per_s": n / (t2 - t1),
    }
