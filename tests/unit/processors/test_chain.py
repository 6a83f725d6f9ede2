from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.errors import VerificationError
from agenttrail.processors.chain import (
    GENESIS,
    GENESIS_HEAD,
    ChainState,
    Failure,
    bench_chain,
    entry_hash,
    extend,
    leaf_hash,
    verify_chain,
)

Record = tuple[int, bytes, bytes, bytes]


def naive_chain(items: list[bytes], start: ChainState = GENESIS) -> list[Record]:
    """Independent re-statement of the contract formula, written without chain.py helpers."""
    out = []
    prev, index = start.head, start.index
    for signing in items:
        digest = hashlib.sha256(b"\x00" + prev + hashlib.sha256(signing).digest()).digest()
        out.append((index, prev, digest, signing))
        prev, index = digest, index + 1
    return out


def build(items: list[bytes], start: ChainState = GENESIS) -> tuple[list[Record], ChainState]:
    state = start
    out = []
    for signing in items:
        index, prev, digest, state = extend(state, signing)
        out.append((index, prev, digest, signing))
    return out, state


payloads = st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=30)


def test_genesis_is_zero_hash_at_index_zero() -> None:
    assert GENESIS == ChainState() == ChainState(0, bytes(32))
    assert GENESIS_HEAD == b"\x00" * 32


def test_hash_formulas_match_contract() -> None:
    signing = b"signing bytes"
    leaf = leaf_hash(signing)
    assert leaf == hashlib.sha256(signing).digest()
    prev = bytes(range(32))
    assert entry_hash(prev, leaf) == hashlib.sha256(b"\x00" + prev + leaf).digest()
    # domain separation: the entry hash is not the plain hash of the concatenation
    assert entry_hash(prev, leaf) != hashlib.sha256(prev + leaf).digest()


def test_extend_returns_index_prev_and_new_state() -> None:
    index, prev, digest, state = extend(GENESIS, b"a")
    assert (index, prev) == (0, GENESIS_HEAD)
    assert state == ChainState(1, digest)
    index2, prev2, digest2, state2 = extend(state, b"b")
    assert (index2, prev2) == (1, digest)
    assert state2 == ChainState(2, digest2)
    assert digest2 != digest


@given(payloads)
def test_extend_matches_independent_implementation(items: list[bytes]) -> None:
    records, state = build(items)
    assert records == naive_chain(items)
    assert state == ChainState(len(items), records[-1][2])


@given(payloads)
def test_extend_is_deterministic_redelivery_reemits_identical_records(items: list[bytes]) -> None:
    first, _ = build(items)
    second, _ = build(items)
    assert first == second
    # redelivery of event k from the state before it re-emits record k exactly
    for k, (index, prev, digest, signing) in enumerate(first):
        assert extend(ChainState(index, prev), signing)[:3] == first[k][:3]
        assert digest == first[k][2]


@given(payloads)
def test_verify_accepts_a_good_chain_from_genesis(items: list[bytes]) -> None:
    records, state = build(items)
    report = verify_chain(records)
    assert report.ok and report.failure is None
    assert report.checked == len(items)
    assert report.state == state
    assert report.start == GENESIS
    report.raise_for_failure()  # does not raise


@settings(max_examples=200)
@given(payloads, st.data())
def test_any_single_byte_change_is_detected_at_exactly_that_index(
    items: list[bytes], data: st.DataObject
) -> None:
    records, _ = build(items)
    k = data.draw(st.integers(0, len(records) - 1), label="entry")
    field = data.draw(st.sampled_from([1, 2, 3]), label="field")
    value = records[k][field]
    if not value:  # empty signing bytes: change it by adding a byte
        changed = b"\x01"
    else:
        pos = data.draw(st.integers(0, len(value) - 1), label="byte")
        flip = data.draw(st.integers(1, 255), label="xor")
        changed = value[:pos] + bytes([value[pos] ^ flip]) + value[pos + 1 :]
    tampered = list(records)
    entry = list(tampered[k])
    entry[field] = changed
    tampered[k] = tuple(entry)  # type: ignore[assignment]
    report = verify_chain(tampered)
    assert not report.ok
    assert report.failure is not None
    assert report.failure.chain_index == k
    assert report.failure.position == k
    assert report.checked == k
    expected_kind = {1: Failure.PREV_HASH, 2: Failure.ENTRY_HASH, 3: Failure.ENTRY_HASH}[field]
    assert report.failure.kind is expected_kind
    assert report.state == ChainState(k, records[k][1])


def test_entry_hash_mismatch_reports_expected_and_actual_hex() -> None:
    records, _ = build([b"a", b"b", b"c"])
    bad = (1, records[1][1], b"\xff" * 32, b"b")
    report = verify_chain([records[0], bad, records[2]])
    assert report.failure is not None
    assert report.failure.kind is Failure.ENTRY_HASH
    assert report.failure.expected == records[1][2].hex()
    assert report.failure.actual == "ff" * 32
    assert "entry_hash_mismatch at chain_index 1" in report.failure.message


def test_index_gap_and_order_failures() -> None:
    records, _ = build([b"a", b"b", b"c", b"d"])
    gap = verify_chain([records[0], records[2], records[3]])
    assert gap.failure is not None
    assert gap.failure.kind is Failure.INDEX_GAP
    assert (gap.failure.chain_index, gap.failure.expected, gap.failure.actual) == (2, "1", "2")

    dup = verify_chain([records[0], records[1], records[1], records[2]])
    assert dup.failure is not None
    assert dup.failure.kind is Failure.INDEX_ORDER
    assert (dup.failure.position, dup.failure.expected, dup.failure.actual) == (2, "2", "1")

    swapped = verify_chain([records[1], records[0]])
    assert swapped.failure is not None
    assert swapped.failure.kind is Failure.INDEX_GAP and swapped.failure.position == 0


def test_fork_same_index_different_content_is_out_of_order() -> None:
    records, _ = build([b"a", b"b"])
    fork = extend(ChainState(1, records[0][2]), b"other")
    report = verify_chain([*records, (fork[0], fork[1], fork[2], b"other")])
    assert report.failure is not None and report.failure.kind is Failure.INDEX_ORDER
    assert report.failure.chain_index == 1


def test_verify_from_an_anchor() -> None:
    items = [bytes([i]) * 10 for i in range(10)]
    records, final = build(items)
    anchor = ChainState(4, records[3][2])
    report = verify_chain(records[4:], anchor=anchor)
    assert report.ok and report.checked == 6 and report.state == final and report.start == anchor
    # a wrong anchor head is a prev_hash mismatch at the first entry
    wrong = verify_chain(records[4:], anchor=ChainState(4, b"\x01" * 32))
    assert wrong.failure is not None
    assert wrong.failure.kind is Failure.PREV_HASH and wrong.failure.chain_index == 4
    assert wrong.failure.expected == "01" * 32
    # entries before the anchor index are out of order
    before = verify_chain(records[3:], anchor=anchor)
    assert before.failure is not None and before.failure.kind is Failure.INDEX_ORDER
    # genesis default cannot verify a suffix
    assert verify_chain(records[4:]).failure.kind is Failure.INDEX_GAP  # type: ignore[union-attr]


def test_suffix_mode_needs_the_signed_head() -> None:
    items = [bytes([i]) for i in range(8)]
    records, final = build(items)
    ok = verify_chain(records[5:], anchor=None, expected_head=final)
    assert ok.ok and ok.start == ChainState(5, records[5][1]) and ok.state == final
    # a forged suffix that is internally consistent fails on the head
    forged, forged_state = build([b"x", b"y"], start=ChainState(6, b"\x07" * 32))
    bad = verify_chain(forged, anchor=None, expected_head=final)
    assert bad.failure is not None and bad.failure.kind is Failure.HEAD_MISMATCH
    assert bad.failure.actual == f"{forged_state.index}:{forged_state.head.hex()}"
    # a suffix that stops short of the head fails too
    short = verify_chain(records[5:7], anchor=None, expected_head=final)
    assert short.failure is not None and short.failure.kind is Failure.HEAD_MISMATCH
    # everything missing fails closed
    empty = verify_chain([], anchor=None, expected_head=final)
    assert empty.failure is not None and empty.failure.kind is Failure.HEAD_MISMATCH
    assert verify_chain([], anchor=None).ok


def test_expected_head_from_genesis() -> None:
    records, final = build([b"a", b"b"])
    assert verify_chain(records, expected_head=final).ok
    report = verify_chain(records[:1], expected_head=final)
    assert report.failure is not None and report.failure.kind is Failure.HEAD_MISMATCH
    assert report.failure.chain_index == 0


@pytest.mark.parametrize(
    "entry",
    [
        None,
        (0, GENESIS_HEAD, b"x" * 32),  # too short
        ("0", GENESIS_HEAD, b"x" * 32, b"a"),  # index is a string
        (1, "HEAD", b"x" * 32, "text not bytes"),
        (1, "HEAD", b"x" * 32, None),
    ],
)
def test_malformed_entries_are_reported_not_raised(entry: object) -> None:
    records, _ = build([b"a"])
    if isinstance(entry, tuple) and entry[1] == "HEAD":  # well linked, but the signing bytes are unusable
        entry = (entry[0], records[0][2], *entry[2:])
    report = verify_chain([records[0], entry])  # type: ignore[list-item]
    assert report.failure is not None
    assert report.failure.kind is Failure.MALFORMED
    assert report.failure.position == 1
    assert report.checked == 1


def test_suffix_mode_rejects_unreadable_first_entry() -> None:
    report = verify_chain([(0, b"short", b"x" * 32, b"a")], anchor=None)
    assert report.failure is not None and report.failure.kind is Failure.MALFORMED
    assert report.failure.chain_index == 0


def test_raise_for_failure_carries_where() -> None:
    records, _ = build([b"a", b"b"])
    report = verify_chain([records[0], (1, records[0][2], b"\x00" * 32, b"b")])
    with pytest.raises(VerificationError) as info:
        report.raise_for_failure(tenant="t1", session="s1")
    where = info.value.where
    assert where["tenant"] == "t1" and where["session"] == "s1"
    assert where["kind"] == "entry_hash_mismatch" and where["chain_index"] == 1
    assert where["expected"] == records[1][2].hex()


def test_verify_consumes_a_generator_lazily() -> None:
    records, final = build([bytes([i]) for i in range(50)])
    report = verify_chain(r for r in records)
    assert report.ok and report.state == final


def test_bench_chain_reports_rates() -> None:
    result = bench_chain(n=2_000)
    assert result["events"] == 2_000
    assert result["extend_per_s"] > 0 and result["verify_per_s"] > 0


@given(payloads, st.data())
def test_any_changed_chain_index_is_detected_at_that_position(
    items: list[bytes], data: st.DataObject
) -> None:
    records, _ = build(items)
    k = data.draw(st.integers(0, len(records) - 1), label="entry")
    new_index = data.draw(st.integers(0, 10_000).filter(lambda i: i != k), label="index")
    tampered = list(records)
    tampered[k] = (new_index, *records[k][1:])
    report = verify_chain(tampered)
    assert report.failure is not None
    assert report.failure.position == k and report.failure.chain_index == new_index
    assert report.failure.kind is (Failure.INDEX_GAP if new_index > k else Failure.INDEX_ORDER)
