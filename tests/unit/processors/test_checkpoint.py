from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.errors import TenantError, VerificationError
from agenttrail.processors.chain import GENESIS, ChainState, extend, verify_chain
from agenttrail.processors.checkpoint import (
    Checkpoint,
    MalformedNote,
    RetentionAnchor,
    build_anchor,
    build_checkpoint,
    head_inclusion_proof,
    head_leaf,
    heads_root,
    parse_note,
    verify_anchor,
    verify_checkpoint,
)
from agenttrail.processors.merkle import hash_leaf, verify_inclusion
from agenttrail.processors.service_key import NoteVerifier, ServiceKey

KEY = ServiceKey.from_seed(bytes(range(32)))
OTHER = ServiceKey.from_seed(bytes(range(1, 33)))
T0 = 1_700_000_000_000_000


def naive_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(leaves[:k]) + naive_root(leaves[k:])).digest()


def chain_heads(n_sessions: int, events: int = 3) -> dict[str, tuple[int, bytes]]:
    heads = {}
    for s in range(n_sessions):
        state = GENESIS
        for e in range(events + s):
            state = extend(state, f"s{s}-e{e}".encode())[3]
        heads[f"session-{s:03d}"] = (state.index, state.head)
    return heads


def test_head_leaf_layout() -> None:
    head = bytes(range(32))
    leaf = head_leaf("sess", 258, head)
    assert leaf == b"sess" + b"\x00" + (258).to_bytes(8, "big") + head
    with pytest.raises(ValueError):
        head_leaf("s", 1, b"short")
    with pytest.raises(ValueError):
        head_leaf("s", -1, head)


def test_heads_root_sorts_by_session_id_and_matches_naive_tree() -> None:
    heads = {"b": (2, b"\x02" * 32), "a": (1, b"\x01" * 32), "é": (3, b"\x03" * 32), "Z": (4, b"\x04" * 32)}
    order = sorted(heads, key=lambda s: s.encode())
    assert order == ["Z", "a", "b", "é"]
    expected = naive_root([head_leaf(s, *heads[s]) for s in order])
    assert heads_root(heads) == expected
    assert heads_root(dict(reversed(list(heads.items())))) == expected  # insertion order irrelevant
    assert heads_root({}) == hashlib.sha256(b"").digest()


def test_checkpoint_text_layout_is_c2sp_checkpoint() -> None:
    heads = chain_heads(3)
    cp = build_checkpoint("acme", heads, None, T0, KEY)
    body, _, sigs = cp.to_text().partition("\n\n")
    lines = body.split("\n")
    assert lines[0] == "agenttrail/acme"
    assert lines[1] == "3"
    assert base64.b64decode(lines[2]) == heads_root(heads)
    assert lines[3] == "prev " + base64.b64encode(bytes(32)).decode()
    assert lines[4] == f"time {T0}"
    assert lines[5] == f"events {sum(n for n, _ in heads.values())}"
    assert sigs.startswith("\u2014 agenttrail-service ") and sigs.endswith("\n")
    blob = base64.b64decode(sigs.split(" ")[2])
    assert blob[:4] == KEY.key_hash and len(blob) == 68
    assert cp.hash == hashlib.sha256((body + "\n").encode()).digest()
    assert cp.tenant == "acme" and cp.kind == "checkpoint"


def test_checkpoint_round_trip_and_verify() -> None:
    heads = chain_heads(5)
    cp = build_checkpoint("acme", heads, None, T0, KEY)
    parsed = Checkpoint.from_text(cp.to_text())
    assert parsed == cp
    assert Checkpoint.from_text(cp.to_text().encode()) == cp
    assert parsed.to_text() == cp.to_text()
    assert verify_checkpoint(parsed, [KEY.verifier], expected_heads=heads) == KEY.name
    assert verify_checkpoint(parsed, [KEY.vkey]) == KEY.name


def test_checkpoint_chain_links_to_previous() -> None:
    heads = chain_heads(2)
    first = build_checkpoint("acme", heads, None, T0, KEY)
    second = build_checkpoint("acme", chain_heads(3), first.hash, T0 + 10, KEY)
    verify_checkpoint(second, [KEY.verifier], previous=first)
    verify_checkpoint(second, [KEY.verifier], previous=first.hash)
    with pytest.raises(VerificationError, match="link"):
        verify_checkpoint(first, [KEY.verifier], previous=second)
    skipped = build_checkpoint("acme", heads, second.hash, T0 + 20, KEY)
    with pytest.raises(VerificationError) as info:
        verify_checkpoint(skipped, [KEY.verifier], previous=first)
    assert info.value.where["expected"] == first.hash.hex()
    backwards = build_checkpoint("acme", heads, first.hash, T0 - 1, KEY)
    with pytest.raises(VerificationError, match="backwards"):
        verify_checkpoint(backwards, [KEY.verifier], previous=first)
    other_tenant = build_checkpoint("other", heads, None, T0, KEY)
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(build_checkpoint("acme", heads, other_tenant.hash, T0, KEY), [KEY.verifier],
                          previous=other_tenant)


def _retext(cp: Checkpoint, line_no: int, new: str) -> str:
    body, _, sigs = cp.to_text().partition("\n\n")
    lines = body.split("\n")
    lines[line_no] = new
    return "\n".join(lines) + "\n\n" + sigs


@pytest.mark.parametrize(
    "line_no,value",
    [
        (0, "agenttrail/evil"),
        (1, "4"),
        (2, base64.b64encode(b"\x09" * 32).decode()),
        (3, "prev " + base64.b64encode(b"\x01" * 32).decode()),
        (4, f"time {T0 + 1}"),
        (5, "events 1"),
    ],
)
def test_tampered_checkpoint_fails_signature(line_no: int, value: str) -> None:
    cp = build_checkpoint("acme", chain_heads(3), None, T0, KEY)
    tampered = Checkpoint.from_text(_retext(cp, line_no, value))  # well-formed, but not what was signed
    with pytest.raises(VerificationError, match="bad signature"):
        verify_checkpoint(tampered, [KEY.verifier])


def test_changed_signature_wrong_key_and_no_keys() -> None:
    cp = build_checkpoint("acme", chain_heads(3), None, T0, KEY)
    sig = cp.signatures[0]
    bad_sig = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    flipped = replace(cp, signatures=(replace(sig, signature=bad_sig),))
    with pytest.raises(VerificationError, match="bad signature"):
        verify_checkpoint(Checkpoint.from_text(flipped.to_text()), [KEY.verifier])
    with pytest.raises(VerificationError, match="not signed by a trusted key"):
        verify_checkpoint(cp, [OTHER.verifier])
    # same name, other key: the key hash differs, so the signature is not attributed to it
    impostor = NoteVerifier.from_public_key(KEY.name, OTHER.public_key)
    with pytest.raises(VerificationError, match="not signed by a trusted key"):
        verify_checkpoint(cp, [impostor])
    with pytest.raises(VerificationError, match="no trusted keys"):
        verify_checkpoint(cp, [])
    signed_by_other = build_checkpoint("acme", chain_heads(3), None, T0, replace(OTHER, name=KEY.name))
    with pytest.raises(VerificationError):
        verify_checkpoint(signed_by_other, [KEY.verifier])


def test_extra_unknown_cosignature_is_ignored() -> None:
    cp = build_checkpoint("acme", chain_heads(2), None, T0, KEY)
    witness = ServiceKey.generate("witness.example")
    cosig = build_checkpoint("acme", chain_heads(2), None, T0, witness).signatures[0]
    both = Checkpoint.from_text(cp.to_text() + cosig.line())
    assert verify_checkpoint(both, [KEY.verifier]) == KEY.name
    assert verify_checkpoint(both, [witness.verifier]) == "witness.example"


def test_expected_heads_mismatches() -> None:
    heads = chain_heads(4)
    cp = build_checkpoint("acme", heads, None, T0, KEY)
    moved = dict(heads)
    sid = next(iter(moved))
    state = extend(ChainState(*moved[sid]), b"one more")[3]
    moved[sid] = (state.index, state.head)
    with pytest.raises(VerificationError, match="root"):
        verify_checkpoint(cp, [KEY.verifier], expected_heads={**heads, sid: (heads[sid][0], state.head)})
    with pytest.raises(VerificationError):
        verify_checkpoint(cp, [KEY.verifier], expected_heads=moved)
    with pytest.raises(VerificationError, match="size"):
        verify_checkpoint(cp, [KEY.verifier], expected_heads={**heads, "new": (1, b"\x05" * 32)})
    # same root but a lying events count cannot be built through build_checkpoint; check it directly
    liar = replace(cp, events=cp.events + 1)
    liar = replace(liar, signatures=(replace(cp.signatures[0], signature=KEY.sign(liar.body().encode())),))
    with pytest.raises(VerificationError, match="event count"):
        verify_checkpoint(liar, [KEY.verifier], expected_heads=heads)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("\n\n", "\n"),  # no blank line
        lambda t: t[:-1],  # no final newline
        lambda t: t.split("\n\n")[0] + "\n\n",  # no signatures
        lambda t: t.replace("\n3\n", "\n03\n", 1),  # non-canonical size
        lambda t: t.replace("\n3\n", "\n-3\n", 1),
        lambda t: t.replace("\n3\n", "\nthree\n", 1),
        lambda t: t.replace("prev ", "prev  ", 1),
        lambda t: t.replace("prev ", "previous ", 1),
        lambda t: t.replace("time ", "events ", 1),
        lambda t: t.replace("agenttrail/acme", "agenttrail/ACME", 1),
        lambda t: t.replace("agenttrail/acme", "other/acme", 1),
        lambda t: t.replace("agenttrail/acme", "agenttrail/acme/anchor", 1),
        lambda t: t.replace("\u2014 ", "- ", 1),
        lambda t: t.replace("\u2014 agenttrail-service ", "\u2014 agenttrail-service  ", 1),
        lambda t: t.replace("\n\n", "\nextra line\n\n", 1),
        lambda t: t.replace("\n", "\r\n"),
        lambda t: t.replace("=\n", "\n", 1),  # root without padding
        lambda t: t + "trailing garbage\n",
        lambda t: t.replace("agenttrail/acme", "agenttrail/ac\x00me", 1),
    ],
)
def test_strict_parser_rejects_malformed_text(mangle: object) -> None:
    text = build_checkpoint("acme", chain_heads(3), None, T0, KEY).to_text()
    bad = mangle(text)  # type: ignore[operator]
    assert bad != text
    with pytest.raises(MalformedNote) as info:
        Checkpoint.from_text(bad)
    assert isinstance(info.value, VerificationError)


def test_parser_rejects_non_utf8_and_oversize() -> None:
    with pytest.raises(MalformedNote):
        Checkpoint.from_text(b"\xff\xfe\n\n")
    with pytest.raises(MalformedNote):
        Checkpoint.from_text("x" * (17 << 20))


@given(
    st.dictionaries(
        st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=12),
        st.tuples(st.integers(0, 2**40), st.binary(min_size=32, max_size=32)),
        max_size=12,
    ),
    st.integers(0, 2**62),
)
def test_property_round_trip(heads: dict[str, tuple[int, bytes]], ts: int) -> None:
    cp = build_checkpoint("t-1", heads, hashlib.sha256(b"p").digest(), ts, KEY)
    assert Checkpoint.from_text(cp.to_text()) == cp
    verify_checkpoint(cp, [KEY.verifier], expected_heads=heads)
    anchor = build_anchor("t-1", heads, ts // 2, None, ts, KEY)
    assert RetentionAnchor.from_text(anchor.to_text()) == anchor
    verify_anchor(anchor, [KEY.verifier])
    assert anchor.root == cp.root


def test_build_rejects_bad_tenant_and_prev() -> None:
    with pytest.raises(TenantError):
        build_checkpoint("Bad Tenant", {}, None, T0, KEY)
    with pytest.raises(ValueError):
        build_checkpoint("acme", {}, b"short", T0, KEY)


def test_session_head_inclusion_proof_against_checkpoint_root() -> None:
    heads = chain_heads(9)
    cp = build_checkpoint("acme", heads, None, T0, KEY)
    for sid, (length, head) in heads.items():
        index, proof = head_inclusion_proof(heads, sid)
        verify_inclusion(hash_leaf(head_leaf(sid, length, head)), index, cp.size, proof, cp.root)
    with pytest.raises(KeyError):
        head_inclusion_proof(heads, "missing")


# -- retention anchors ----------------------------------------------------------------------------
def test_anchor_round_trip_verify_and_heads() -> None:
    heads = chain_heads(4)
    heads["with space inside"] = (7, b"\x07" * 32)
    anchor = build_anchor("acme", heads, T0 - 90 * 86_400_000_000, None, T0, KEY)
    text = anchor.to_text()
    assert text.startswith("agenttrail/acme/anchor\n5\n")
    assert f"\ncut {T0 - 90 * 86_400_000_000}\n" in text
    assert "head 7 " + base64.b64encode(b"\x07" * 32).decode() + " with space inside\n" in text
    parsed = RetentionAnchor.from_text(text)
    assert parsed == anchor and parsed.kind == "anchor" and parsed.tenant == "acme"
    assert parse_note(text.encode()) == anchor
    assert verify_anchor(parsed, [KEY.verifier]) == KEY.name
    assert parsed.heads_map() == {sid: ChainState(n, h) for sid, (n, h) in heads.items()}
    assert parsed.root == heads_root(heads)


def test_anchor_and_checkpoint_cannot_be_confused() -> None:
    heads = chain_heads(2)
    anchor = build_anchor("acme", heads, T0, None, T0, KEY)
    cp = build_checkpoint("acme", heads, None, T0, KEY)
    assert isinstance(parse_note(cp.to_text()), Checkpoint)
    with pytest.raises(MalformedNote):
        Checkpoint.from_text(anchor.to_text())
    with pytest.raises(MalformedNote):
        RetentionAnchor.from_text(cp.to_text())


def test_tampered_anchor_is_rejected() -> None:
    heads = chain_heads(3)
    anchor = build_anchor("acme", heads, T0, None, T0, KEY)
    sid = anchor.heads[0][0]
    # change a head and recompute the root: the signature no longer matches
    forged_heads = {**heads, sid: (heads[sid][0], b"\x0f" * 32)}
    forged = replace(anchor, heads=build_anchor("acme", forged_heads, T0, None, T0, KEY).heads,
                     root=heads_root(forged_heads))
    with pytest.raises(VerificationError, match="bad signature"):
        verify_anchor(RetentionAnchor.from_text(forged.to_text()), [KEY.verifier])
    # a head list that does not match the signed root fails even with a valid signature
    inconsistent = replace(anchor, heads=anchor.heads[1:])
    inconsistent = replace(inconsistent, signatures=(
        replace(anchor.signatures[0], signature=KEY.sign(inconsistent.body().encode())),))
    with pytest.raises(VerificationError, match="root or size"):
        verify_anchor(inconsistent, [KEY.verifier])
    with pytest.raises(VerificationError):
        verify_anchor(anchor, [OTHER.verifier])


def test_anchor_parser_rejects_unsorted_repeated_or_bad_heads() -> None:
    anchor = build_anchor("acme", chain_heads(3), T0, None, T0, KEY)
    body, _, sigs = anchor.to_text().partition("\n\n")
    lines = body.split("\n")
    for bad_lines in (
        [*lines[:6], lines[7], lines[6], lines[8]],  # unsorted
        [*lines[:6], lines[6], lines[6], lines[8]],  # repeated
        [*lines[:6], lines[6].replace("head ", "head x", 1), *lines[7:]],
        [*lines[:6], lines[6].replace("= ", " ", 1), *lines[7:]],  # head without padding
        [*lines[:5], *lines[6:]],  # no cut line
    ):
        with pytest.raises(MalformedNote):
            RetentionAnchor.from_text("\n".join(bad_lines) + "\n\n" + sigs)


@pytest.mark.parametrize("sid", ["", " lead", "trail ", "new\nline", "nul\x00"])
def test_anchor_refuses_unwritable_session_ids(sid: str) -> None:
    with pytest.raises(ValueError):
        build_anchor("acme", {sid: (1, b"\x01" * 32)}, T0, None, T0, KEY)


def test_anchor_chain_and_verification_after_purge() -> None:
    """The anchor's head for a session lets the chain be verified from the cut onward."""
    items = [f"e{i}".encode() for i in range(10)]
    state, records = GENESIS, []
    for item in items[:6]:
        index, prev, digest, state = extend(state, item)
        records.append((index, prev, digest, item))
    first = build_anchor("acme", {"s": (state.index, state.head)}, T0, None, T0, KEY)
    for item in items[6:]:
        index, prev, digest, state = extend(state, item)
        records.append((index, prev, digest, item))
    second = build_anchor("acme", {"s": (state.index, state.head)}, T0 + 5, first.hash, T0 + 5, KEY)
    verify_anchor(second, [KEY.verifier], previous=first)
    with pytest.raises(VerificationError):
        verify_anchor(first, [KEY.verifier], previous=second)
    # after purging entries 0..5, verification starts from the first anchor's head
    kept = records[6:]
    report = verify_chain(kept, anchor=first.heads_map()["s"], expected_head=second.heads_map()["s"])
    assert report.ok and report.checked == 4
