from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.errors import VerificationError
from agenttrail.processors.merkle import (
    EMPTY_ROOT,
    hash_children,
    hash_leaf,
    inclusion_proof,
    inclusion_proof_from_hashes,
    merkle_root,
    root_from_inclusion_proof,
    root_of_hashes,
    verify_inclusion,
)


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written literally (recursive split at the largest power of two < n)."""
    if not leaves:
        return h(b"")
    if len(leaves) == 1:
        return h(b"\x00" + leaves[0])
    k = split_point(len(leaves))
    return h(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), literally."""
    n = len(leaves)
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def test_empty_tree_and_single_leaf() -> None:
    assert merkle_root([]) == EMPTY_ROOT == h(b"")
    assert merkle_root([b"x"]) == h(b"\x00x") == hash_leaf(b"x")


def test_hand_computed_three_leaf_tree() -> None:
    a, b, c = h(b"\x00a"), h(b"\x00b"), h(b"\x00c")
    ab = h(b"\x01" + a + b)
    assert merkle_root([b"a", b"b", b"c"]) == h(b"\x01" + ab + c)
    assert hash_children(a, b) == ab
    # the proof for c is [ab]; for a it is [b, c]
    assert inclusion_proof([b"a", b"b", b"c"], 2) == [ab]
    assert inclusion_proof([b"a", b"b", b"c"], 0) == [b, c]


def test_hand_computed_five_leaf_tree_splits_at_four() -> None:
    hs = [h(b"\x00" + bytes([i])) for i in range(5)]
    left = h(b"\x01" + h(b"\x01" + hs[0] + hs[1]) + h(b"\x01" + hs[2] + hs[3]))
    assert merkle_root([bytes([i]) for i in range(5)]) == h(b"\x01" + left + hs[4])


def test_leaf_and_node_are_domain_separated() -> None:
    a, b = hash_leaf(b"a"), hash_leaf(b"b")
    # a two-leaf root cannot be passed off as a leaf whose data is the concatenation
    assert merkle_root([b"a", b"b"]) != hash_leaf(a + b)
    assert merkle_root([b"a", b"b"]) != merkle_root([a + b])


@pytest.mark.parametrize("n", range(71))
def test_root_matches_naive_recursive_implementation(n: int) -> None:
    leaves = leaves_of(n)
    assert merkle_root(leaves) == naive_mth(leaves)
    assert root_of_hashes([hash_leaf(x) for x in leaves]) == naive_mth(leaves)


@pytest.mark.parametrize("n", range(1, 71))
def test_inclusion_proofs_match_naive_and_verify(n: int) -> None:
    leaves = leaves_of(n)
    root = naive_mth(leaves)
    for m in range(n):
        proof = inclusion_proof(leaves, m)
        assert proof == naive_path(m, leaves)
        verify_inclusion(hash_leaf(leaves[m]), m, n, proof, root)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 33])
def test_inclusion_proof_rejects_wrong_leaf_index_size_or_root(n: int) -> None:
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    for m in range(n):
        proof = inclusion_proof(leaves, m)
        with pytest.raises(VerificationError):
            verify_inclusion(hash_leaf(b"not a leaf"), m, n, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(hash_leaf(leaves[m]), m, n, proof, h(b"other root"))
        with pytest.raises(VerificationError):  # the index must lie inside the tree
            verify_inclusion(hash_leaf(leaves[m]), m, m, proof, root)
        # NB: a proof may also compute the same root for a larger size (e.g. index 0 of 3 vs of 4);
        # RFC 9162 binds the size to the root through the signed checkpoint, not the proof.
        if n > 1:
            with pytest.raises(VerificationError):
                verify_inclusion(hash_leaf(leaves[m]), (m + 1) % n, n, proof, root)
            with pytest.raises(VerificationError):
                verify_inclusion(hash_leaf(leaves[m]), m, n, proof[:-1], root)
        with pytest.raises(VerificationError):
            verify_inclusion(hash_leaf(leaves[m]), m, n, [*proof, h(b"extra")], root)


def test_leaf_hash_is_not_accepted_as_leaf_data_second_preimage() -> None:
    """An inner node presented as a leaf (the classic second-preimage attack) fails."""
    leaves = leaves_of(4)
    root = merkle_root(leaves)
    inner = hash_children(hash_leaf(leaves[0]), hash_leaf(leaves[1]))
    with pytest.raises(VerificationError):
        right = hash_children(hash_leaf(leaves[2]), hash_leaf(leaves[3]))
        verify_inclusion(hash_leaf(inner), 0, 2, [right], root)


def test_out_of_range_and_malformed_proofs() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(leaves_of(3), 3)
    with pytest.raises(ValueError):
        inclusion_proof_from_hashes([], 0)
    with pytest.raises(VerificationError):
        root_from_inclusion_proof(hash_leaf(b"x"), 0, 0, [])
    with pytest.raises(VerificationError):
        root_from_inclusion_proof(hash_leaf(b"x"), -1, 3, [])
    with pytest.raises(VerificationError) as info:
        root_from_inclusion_proof(hash_leaf(b"x"), 0, 2, [b"short"])
    assert info.value.where["tree_size"] == 2


@given(st.lists(st.binary(max_size=16), min_size=1, max_size=40), st.data())
def test_property_every_leaf_proves_against_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    m = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert root == naive_mth(leaves)
    proof = inclusion_proof(leaves, m)
    assert root_from_inclusion_proof(hash_leaf(leaves[m]), m, len(leaves), proof) == root


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=20), st.data())
def test_property_changing_any_leaf_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    m = data.draw(st.integers(0, len(leaves) - 1))
    changed = list(leaves)
    changed[m] = leaves[m] + b"!"
    assert merkle_root(changed) != merkle_root(leaves)
