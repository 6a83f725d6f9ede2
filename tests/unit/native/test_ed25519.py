"""The Rust Ed25519 verifier (agenttrail/native/ed25519-rs, loaded by agenttrail.native.ed25519)
against libsodium, and its batch against its own one-by-one answers.

The rule it must keep: libsodium's strictness on encodings (canonical S, canonical R and A, no
small-order R or A) with RFC 8032's cofactored equation, and keys of prime order only. So it
answers as libsodium does on every honest and every mutated signature; the two known divergences,
pinned here so a change of rule is noticed, are signatures crafted by the key's holder: an R with a
small-order component (accepted here, refused by libsodium) and a key with a small-order component
(refused here, accepted by libsodium when the signature is crafted to fit)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

from agenttrail import crypto
from agenttrail.native import ed25519
from tests.unit.native import ed25519_ref as ref

native_only = pytest.mark.skipif(ed25519.lib is None, reason=f"the Rust Ed25519 library is off ({ed25519.why_off})")


def sodium_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's detached verification (crypto_sign_open takes signature || message)."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        return False
    return True


def secret_scalar(seed: bytes) -> int:
    """RFC 8032 5.1.5: the clamped scalar a of a seed, so that the public key is [a]B."""
    a = int.from_bytes(hashlib.sha512(seed).digest()[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


@dataclass(frozen=True, slots=True)
class Signer:
    """An honest key (made by OpenSSL through crypto.SigningKey) whose secret scalar we know."""

    key: crypto.SigningKey
    a: int

    @classmethod
    def make(cls, seed: bytes) -> Signer:
        return cls(crypto.SigningKey.from_seed(seed), secret_scalar(seed))

    @property
    def pk(self) -> bytes:
        return self.key.public_key

    def sign(self, msg: bytes) -> bytes:
        return self.key.sign(msg)

    def sign_mixed_r(self, msg: bytes, j: int = 1) -> bytes:
        """S = r + k a with R = [r]B + [j]T: holds after multiplying by 8, not before."""
        r, r_point = NONCES[j % len(NONCES)]
        return ref.sign_raw(self.a, self.pk, ref.add(r_point, ref.SMALL_ORDER[j % 8]), r, msg)


def _seed(i: int) -> bytes:
    return hashlib.sha256(b"agenttrail ed25519 test key %d" % i).digest()


NONCES = [(r, ref.mul(r, ref.BASE))
          for r in (int.from_bytes(hashlib.sha256(b"nonce %d" % i).digest(), "little") % ref.L for i in range(4))]
FEW = [Signer.make(_seed(i)) for i in range(3)]
MANY = [Signer.make(_seed(i)) for i in range(300)]

# The 8 small-order points, canonically encoded, and the non-canonical encodings of those of them
# that have one: y = 0 and y = 1 as y + p, and x = 0 (y = +-1) with the sign bit set.
SMALL_ORDER = [ref.encode(t) for t in ref.SMALL_ORDER]
_P = ref.P.to_bytes(32, "little")
NON_CANONICAL_SMALL_ORDER = [
    (ref.P + 0).to_bytes(32, "little"), (ref.P + 0 + (1 << 255)).to_bytes(32, "little"),
    (ref.P + 1).to_bytes(32, "little"), (ref.P + 1 + (1 << 255)).to_bytes(32, "little"),
    (1 + (1 << 255)).to_bytes(32, "little"), (ref.P - 1 + (1 << 255)).to_bytes(32, "little"),
]
ALL_SMALL_ORDER = SMALL_ORDER + NON_CANONICAL_SMALL_ORDER


def test_the_reference_agrees_with_the_keys_and_signatures_it_checks() -> None:
    """Sanity of the crafting tools: [a]B is the real public key, T8 has order exactly 8, and every
    encoding above decodes to a small-order point (or is refused by a strict decoder)."""
    for s in FEW:
        assert ref.encode(ref.mul(s.a, ref.BASE)) == s.pk
    assert ref.order_divides(8, ref.T8) and not ref.order_divides(4, ref.T8)
    assert len(set(SMALL_ORDER)) == 8
    for enc in NON_CANONICAL_SMALL_ORDER:
        y = int.from_bytes(enc, "little") & ((1 << 255) - 1)
        assert y % ref.P in (0, 1, ref.P - 1)


# ---- 1. one signature, against libsodium -----------------------------------------------------

messages = st.binary(max_size=300) | st.sampled_from([b"", b"\x00", b"\x00" * 64, bytes(range(256)) * 3])
seeds = st.binary(min_size=32, max_size=32)


@native_only
@settings(max_examples=150, deadline=None)
@given(seeds, messages)
def test_honest_signatures_are_valid(seed: bytes, msg: bytes) -> None:
    key = crypto.SigningKey.from_seed(seed)
    sig = key.sign(msg)
    assert ed25519.verify(key.public_key, msg, sig)
    assert sodium_verify(key.public_key, msg, sig)
    assert crypto.verify(key.public_key, msg, sig) and crypto.public_key_ok(key.public_key)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


MUTATIONS = ["flip_sig", "flip_msg", "flip_pk", "truncate_sig", "extend_sig", "truncate_pk", "truncate_msg",
             "extend_msg", "s_plus_l", "s_plus_2l", "small_order_r", "small_order_pk", "small_order_both_s_zero",
             "zero_s", "r_to_negated", "s_random", "r_random", "other_key", "swap_halves"]


def _mutate(pk: bytes, msg: bytes, sig: bytes, kind: str, data: st.DataObject) -> tuple[bytes, bytes, bytes]:
    s = int.from_bytes(sig[32:], "little")
    if kind == "flip_sig":
        return pk, msg, _flip(sig, data.draw(st.integers(0, 511)))
    if kind == "flip_msg":
        return pk, (_flip(msg, data.draw(st.integers(0, 8 * len(msg) - 1))) if msg else b"\x00"), sig
    if kind == "flip_pk":
        return _flip(pk, data.draw(st.integers(0, 255))), msg, sig
    if kind == "truncate_sig":
        return pk, msg, sig[:data.draw(st.integers(0, 63))]
    if kind == "extend_sig":
        return pk, msg, sig + data.draw(st.binary(min_size=1, max_size=4))
    if kind == "truncate_pk":
        return pk[:data.draw(st.integers(0, 31))], msg, sig
    if kind == "truncate_msg":
        return pk, msg[:-1] if msg else b"x", sig
    if kind == "extend_msg":
        return pk, msg + data.draw(st.binary(min_size=1, max_size=4)), sig
    if kind == "s_plus_l":  # the same S modulo L, not canonical
        return pk, msg, sig[:32] + (s + ref.L).to_bytes(32, "little")
    if kind == "s_plus_2l":
        return pk, msg, sig[:32] + ((s + 2 * ref.L) % 2**256).to_bytes(32, "little")
    if kind == "small_order_r":
        return pk, msg, data.draw(st.sampled_from(ALL_SMALL_ORDER)) + sig[32:]
    if kind == "small_order_pk":
        return data.draw(st.sampled_from(ALL_SMALL_ORDER)), msg, sig
    if kind == "small_order_both_s_zero":  # [0]B = R + [k]A holds for A = R = identity: refused anyway
        enc = data.draw(st.sampled_from(ALL_SMALL_ORDER))
        return enc, msg, data.draw(st.sampled_from(ALL_SMALL_ORDER)) + bytes(32)
    if kind == "zero_s":
        return pk, msg, sig[:32] + bytes(32)
    if kind == "r_to_negated":
        return pk, msg, _flip(sig, 255)
    if kind == "s_random":
        return pk, msg, sig[:32] + data.draw(st.binary(min_size=32, max_size=32))
    if kind == "r_random":
        return pk, msg, data.draw(st.binary(min_size=32, max_size=32)) + sig[32:]
    if kind == "other_key":
        return data.draw(st.sampled_from(MANY)).pk, msg, sig
    assert kind == "swap_halves"
    return pk, msg, sig[32:] + sig[:32]


@native_only
@settings(max_examples=1200, deadline=None)
@given(seeds, messages, st.sampled_from(MUTATIONS), st.data())
def test_mutated_signatures_get_libsodiums_answer(seed: bytes, msg: bytes, kind: str, data: st.DataObject) -> None:
    key = crypto.SigningKey.from_seed(seed)
    pk, m, sig = _mutate(key.public_key, msg, key.sign(msg), kind, data)
    expected = sodium_verify(pk, m, sig)
    assert ed25519.verify(pk, m, sig) == expected, (kind, pk.hex(), m.hex(), sig.hex())
    assert crypto.verify(pk, m, sig) == expected
    if (pk, m, sig) != (key.public_key, msg, key.sign(msg)):
        assert not expected, kind  # a mutation that changes something never makes a valid signature


@native_only
@pytest.mark.parametrize("s", [ref.L, ref.L + 1, 2**253, 2**256 - 1])
def test_a_non_canonical_s_is_refused_even_when_it_would_verify_modulo_l(s: int) -> None:
    """S' = S + L verifies in the group equation; both verifiers refuse it on its encoding alone."""
    signer = FEW[0]
    sig = signer.sign(b"m")
    honest_s = int.from_bytes(sig[32:], "little")
    for bad in (sig[:32] + (s % 2**256).to_bytes(32, "little"),
                sig[:32] + (honest_s + ref.L).to_bytes(32, "little")):
        assert not ed25519.verify(signer.pk, b"m", bad)
        assert not sodium_verify(signer.pk, b"m", bad)


# ---- 2. a batch answers as one by one ----------------------------------------------------------

BATCH_KINDS = ["valid", "valid", "valid", "flip_sig", "wrong_msg", "other_key", "s_plus_l", "small_order_r",
               "mixed_r", "refused_key", "mixed_key", "short_sig"]
MIXED_KEY = ref.encode(ref.add(ref.mul(secret_scalar(_seed(0)), ref.BASE), ref.T8))


def _triple(signer: Signer, msg: bytes, kind: str, bit: int) -> tuple[bytes, bytes, bytes]:
    if kind == "mixed_r":
        return signer.pk, msg, signer.sign_mixed_r(msg, 1 + bit % 7)
    sig = signer.sign(msg)
    if kind == "flip_sig":
        return signer.pk, msg, _flip(sig, bit % 512)
    if kind == "wrong_msg":
        return signer.pk, msg + b"!", sig
    if kind == "other_key":
        other = MANY[bit % len(MANY)].pk
        return (other if other != signer.pk else MANY[(bit + 1) % len(MANY)].pk), msg, sig
    if kind == "s_plus_l":
        return signer.pk, msg, sig[:32] + (int.from_bytes(sig[32:], "little") + ref.L).to_bytes(32, "little")
    if kind == "small_order_r":
        return signer.pk, msg, ALL_SMALL_ORDER[bit % len(ALL_SMALL_ORDER)] + sig[32:]
    if kind == "refused_key":
        return ALL_SMALL_ORDER[bit % len(ALL_SMALL_ORDER)], msg, sig
    if kind == "mixed_key":
        return MIXED_KEY, msg, sig
    if kind == "short_sig":
        return signer.pk, msg, sig[:63]
    assert kind == "valid"
    return signer.pk, msg, sig


def batches(pool: list[Signer], kinds: list[str]) -> st.SearchStrategy[list[tuple[bytes, bytes, bytes]]]:
    item = st.builds(_triple, st.sampled_from(pool), st.binary(max_size=40), st.sampled_from(kinds),
                     st.integers(0, 10**6))
    return st.integers(1, 300).flatmap(lambda n: st.lists(item, min_size=n, max_size=n))  # big ones too


def _check_batch(items: list[tuple[bytes, bytes, bytes]]) -> None:
    pks, msgs, sigs = ([t[i] for t in items] for i in range(3))
    one_by_one = [crypto.verify(*t) for t in items]
    assert crypto.verify_many(pks, msgs, sigs) == one_by_one
    assert ed25519.verify_all(pks, msgs, sigs) == all(one_by_one)
    assert one_by_one == [ed25519.verify(*t) for t in items]


@native_only
@settings(max_examples=60, deadline=None)
@given(batches(FEW, BATCH_KINDS))
def test_a_batch_with_repeated_keys_answers_as_one_by_one(items: list[tuple[bytes, bytes, bytes]]) -> None:
    _check_batch(items)


@native_only
@settings(max_examples=60, deadline=None)
@given(batches(MANY, BATCH_KINDS))
def test_a_batch_with_many_keys_answers_as_one_by_one(items: list[tuple[bytes, bytes, bytes]]) -> None:
    _check_batch(items)


@native_only
@settings(max_examples=40, deadline=None)
@given(batches(FEW, ["valid", "mixed_r"]) | batches(MANY, ["valid", "mixed_r"]),
       st.integers(0, 299), st.sampled_from(BATCH_KINDS[3:]), st.integers(0, 10**6))
def test_one_bad_signature_anywhere_fails_the_batch(items: list[tuple[bytes, bytes, bytes]], where: int, kind: str,
                                                   bit: int) -> None:
    """All valid: the batch says so; one bad one at any place: the batch refuses, verify_many
    names exactly that one."""
    assert ed25519.verify_all(*([t[i] for t in items] for i in range(3)))
    where %= len(items)
    bad = _triple(FEW[0], b"bad one", kind, bit)
    if crypto.verify(*bad):  # mixed_r is valid under the cofactored rule; make it a bad one
        bad = (bad[0], bad[1] + b"!", bad[2])
    items = [*items[:where], bad, *items[where + 1:]]
    pks, msgs, sigs = ([t[i] for t in items] for i in range(3))
    assert not ed25519.verify_all(pks, msgs, sigs)
    assert crypto.verify_many(pks, msgs, sigs) == [i != where for i in range(len(items))]


@native_only
def test_the_empty_batch() -> None:
    assert ed25519.verify_all([], [], []) is True
    assert crypto.verify_many([], [], []) == []


# ---- 3. keys -----------------------------------------------------------------------------------

@native_only
@pytest.mark.parametrize("enc", ALL_SMALL_ORDER, ids=lambda b: b.hex()[:8] + ".." + b.hex()[-2:])
def test_small_order_keys_are_refused(enc: bytes) -> None:
    assert ed25519.key(enc) is None
    assert not crypto.public_key_ok(enc)
    assert not crypto_core_ed25519_is_valid_point(enc)


@native_only
@pytest.mark.parametrize("j", range(1, 8))
def test_a_key_with_a_small_order_component_is_refused(j: int) -> None:
    signer = FEW[1]
    a_point = ref.mul(signer.a, ref.BASE)
    mixed = ref.encode(ref.add(a_point, ref.SMALL_ORDER[j]))
    assert ed25519.key(mixed) is None and not crypto.public_key_ok(mixed)
    assert not crypto_core_ed25519_is_valid_point(mixed)
    assert ed25519.key(ref.encode(a_point)) is not None and crypto.public_key_ok(signer.pk)


@native_only
@settings(max_examples=60, deadline=None)
@given(seeds)
def test_honest_keys_are_accepted(seed: bytes) -> None:
    pk = crypto.SigningKey.from_seed(seed).public_key
    assert ed25519.key(pk) is not None and crypto.public_key_ok(pk)


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_public_key_ok_agrees_with_libsodium_on_random_bytes(raw: bytes) -> None:
    assert crypto.public_key_ok(raw) == bool(crypto_core_ed25519_is_valid_point(raw))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, ref.L - 1), st.integers(0, 7), st.booleans())
def test_public_key_ok_agrees_with_libsodium_on_points(a: int, j: int, flip_sign: bool) -> None:
    """Random points of every order 8L/d (and the other x for the same y), not just random bytes."""
    enc = ref.encode(ref.add(ref.mul(a, ref.BASE), ref.SMALL_ORDER[j]))
    if flip_sign:
        enc = _flip(enc, 255)
    expected = bool(crypto_core_ed25519_is_valid_point(enc))
    assert expected == (j == 0)  # flipping the sign bit gives -P, of the same order
    assert crypto.public_key_ok(enc) == expected


@pytest.mark.parametrize("c", range(19))
def test_non_canonical_y_is_refused_as_libsodium_does(c: int) -> None:
    for enc in ((ref.P + c).to_bytes(32, "little"), (ref.P + c + (1 << 255)).to_bytes(32, "little")):
        assert not crypto_core_ed25519_is_valid_point(enc)
        assert not crypto.public_key_ok(enc)


def test_public_key_ok_refuses_what_is_not_32_bytes() -> None:
    pk = FEW[0].pk
    for bad in (pk[:31], pk + b"\x00", b"", bytearray(pk)):
        assert not crypto.public_key_ok(bad)  # type: ignore[arg-type]


# ---- 4. the documented divergence: an R with a small-order component ---------------------------

@native_only
@pytest.mark.parametrize("j", range(1, 8))
def test_a_mixed_order_r_is_accepted_here_and_refused_by_libsodium(j: int) -> None:
    """R = [r]B + T, S = r + k a: [S]B = R + [k]A fails by T, [8][S]B = [8]R + [8][k]A holds. The
    cofactored rule accepts it (RFC 8032's check), libsodium's cofactorless rule refuses it."""
    signer = FEW[2]
    msg = b"crafted by the key's holder %d" % j
    sig = signer.sign_mixed_r(msg, j)
    assert not ref.order_divides(ref.L, ref.decode(sig[:32]) or ref.IDENTITY)  # R is not of prime order
    assert ed25519.verify(signer.pk, msg, sig)
    assert crypto.verify(signer.pk, msg, sig)
    assert ed25519.verify_all([signer.pk], [msg], [sig])
    assert not sodium_verify(signer.pk, msg, sig)

    others = [(s.pk, b"event %d" % i, s.sign(b"event %d" % i)) for i, s in enumerate(MANY[:20])]
    items = [*others[:7], (signer.pk, msg, sig), *others[7:]]
    pks, msgs, sigs = ([t[i] for t in items] for i in range(3))
    assert ed25519.verify_all(pks, msgs, sigs)
    assert crypto.verify_many(pks, msgs, sigs) == [crypto.verify(*t) for t in items] == [True] * 21
    sigs[3] = _flip(sigs[3], 7)
    assert crypto.verify_many(pks, msgs, sigs) == [i != 3 for i in range(21)]


def _sodium_accepted_under_a_mixed_key(j: int) -> tuple[bytes, bytes, bytes]:
    """A key A' = [a]B + [j]T and a signature libsodium accepts under it: S = r + k a and
    R = [r]B - [k j]T, which needs k j = 0 mod 8 for R = [r]B: tried until the hash gives it."""
    a = secret_scalar(_seed(0))
    pk = ref.encode(ref.add(ref.mul(a, ref.BASE), ref.SMALL_ORDER[j]))
    r, r_point = NONCES[0]
    for i in range(1000):
        msg = b"mixed key %d" % i
        sig = ref.sign_raw(a, pk, r_point, r, msg)
        if ref.hram(sig[:32], pk, msg) * j % 8 == 0:
            return pk, msg, sig
    raise AssertionError("no fitting message in 1000 tries")


@native_only
@pytest.mark.parametrize("j", [1, 2, 4])
def test_a_key_with_a_small_order_component_is_refused_where_libsodium_accepts(j: int) -> None:
    """The other divergence: libsodium checks A for small order but not for a small-order
    component, so a crafted signature under A' = [a]B + T passes there; here the key is refused."""
    pk, msg, sig = _sodium_accepted_under_a_mixed_key(j)
    assert sodium_verify(pk, msg, sig)
    assert not crypto_core_ed25519_is_valid_point(pk)
    assert ed25519.key(pk) is None
    assert not ed25519.verify(pk, msg, sig) and not crypto.verify(pk, msg, sig)
    items = [(s.pk, b"e", s.sign(b"e")) for s in FEW] + [(pk, msg, sig)]
    pks, msgs, sigs = ([t[i] for t in items] for i in range(3))
    assert not ed25519.verify_all(pks, msgs, sigs)
    assert crypto.verify_many(pks, msgs, sigs) == [True, True, True, False]


# ---- 5. AGENTTRAIL_NATIVE=0 --------------------------------------------------------------------

_OFF_SCRIPT = """
import json, sys
from agenttrail import crypto
from agenttrail.native import ed25519
cases = [tuple(bytes.fromhex(x) for x in t) for t in json.loads(sys.stdin.read())]
pks, msgs, sigs = ([t[i] for t in cases] for i in range(3))
print(json.dumps({"lib": ed25519.lib is None, "why": ed25519.why_off, "verifier": crypto.VERIFIER,
                  "many": crypto.verify_many(pks, msgs, sigs), "one": [crypto.verify(*t) for t in cases],
                  "key_ok": [crypto.public_key_ok(p) for p in pks]}))
"""


def test_agenttrail_native_0_verifies_with_libsodium() -> None:
    items = [_triple(s, b"event %d" % i, kind, i)
             for i, (s, kind) in enumerate(zip(MANY[:24], BATCH_KINDS * 2, strict=True))]
    items += [_sodium_accepted_under_a_mixed_key(1)]
    # libsodium's answer, except that keys with a small-order component are refused in both modes
    expected = [sodium_verify(*t) and bool(crypto_core_ed25519_is_valid_point(t[0])) for t in items]
    assert True in expected and False in expected and sodium_verify(*items[-1])
    stdin = json.dumps([[x.hex() for x in t] for t in items])
    out = subprocess.run([sys.executable, "-c", _OFF_SCRIPT], input=stdin, capture_output=True, text=True,
                         check=True, env={**os.environ, "AGENTTRAIL_NATIVE": "0"}).stdout
    found = json.loads(out)
    assert found["lib"] is True and found["why"] == "AGENTTRAIL_NATIVE=0" and found["verifier"] == "libsodium"
    assert found["many"] == found["one"] == expected
    # public_key_ok without the library still refuses keys of small order or with a small-order part
    assert found["key_ok"] == [bool(crypto_core_ed25519_is_valid_point(t[0])) for t in items]


# ---- 6. refused keys inside a batch ------------------------------------------------------------

@native_only
@pytest.mark.parametrize("bad_key", [SMALL_ORDER[0], SMALL_ORDER[5], NON_CANONICAL_SMALL_ORDER[2], MIXED_KEY,
                                     _P, b"\x00" * 31, b"\x01" * 33])
def test_a_refused_key_fails_the_batch_and_is_answered_alone(bad_key: bytes) -> None:
    assert ed25519.key(bad_key) is None
    items = [(s.pk, b"m%d" % i, s.sign(b"m%d" % i)) for i, s in enumerate(MANY[:10])]
    items[4] = (bad_key, items[4][1], items[4][2])
    pks, msgs, sigs = ([t[i] for t in items] for i in range(3))
    assert ed25519.verify_all(pks, msgs, sigs) is False
    assert crypto.verify_many(pks, msgs, sigs) == [i != 4 for i in range(10)]
