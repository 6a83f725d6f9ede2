"""RFC 6962 / RFC 9162 Merkle tree hash and inclusion proofs (pure, bytes only).

    leaf node  = SHA-256(0x00 ‖ data)
    inner node = SHA-256(0x01 ‖ left ‖ right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k = the largest power of two < n

The root is computed level by level, carrying an odd last node up unchanged, which yields exactly
the RFC tree (the RFC's left subtrees are always complete). Consistency proofs are not provided:
the checkpoint tree is over the *current* session heads, whose leaves change between checkpoints,
so it is not an append-only log and a consistency proof would not mean anything; checkpoints are
linked by the `prev` hash instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

from agenttrail.errors import VerificationError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"").digest()


def hash_leaf(data: bytes) -> bytes:
    return sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return sha256(NODE_PREFIX + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    upper = [sha256(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
    if len(level) & 1:
        upper.append(level[-1])
    return upper


def root_of_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf data."""
    return root_of_hashes([hash_leaf(leaf) for leaf in leaves])


def inclusion_proof_from_hashes(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[n]) (the audit path, bottom-up) over already-hashed leaves."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf index {index} out of range for tree size {len(leaf_hashes)}")
    proof: list[bytes] = []
    level = list(leaf_hashes)
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):  # else: the last odd node, carried up without a sibling
            proof.append(level[sibling])
        level = _next_level(level)
        i >>= 1
    return proof


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[n]) over leaf data."""
    return inclusion_proof_from_hashes([hash_leaf(leaf) for leaf in leaves], index)


def root_from_inclusion_proof(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root implied by an audit path; raises on a malformed proof."""
    where = {"index": index, "tree_size": tree_size, "proof_length": len(proof)}
    if not 0 <= index < tree_size:
        raise VerificationError("inclusion proof: leaf index out of range", where)
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if len(p) != 32:
            raise VerificationError("inclusion proof: hash is not 32 bytes", where)
        if sn == 0:
            raise VerificationError("inclusion proof: too long", where)
        if fn & 1 or fn == sn:
            r = sha256(NODE_PREFIX + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof: too short", where)
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise VerificationError unless `proof` shows `leaf_hash` at `index` of the tree with `root`."""
    computed = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    if computed != root:
        raise VerificationError(
            "inclusion proof does not lead to the root",
            {"index": index, "tree_size": tree_size, "expected": root.hex(), "actual": computed.hex()},
        )
