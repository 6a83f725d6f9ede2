"""Ed25519 signing with the Rust library (agenttrail/native/ed25519-rs, ``ed25519.Signer``), which
``crypto.SigningKey.sign`` uses when the library is loaded.

Pure Ed25519 (RFC 8032, no prehash) is deterministic, so the rule is byte equality: for every seed
and message the native signature is OpenSSL's, is RFC 8032's on its test vectors, and libsodium
accepts it. With ``AGENTTRAIL_NATIVE=0`` OpenSSL signs, to the same bytes."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_open

from agenttrail import crypto
from agenttrail.native import ed25519

native_only = pytest.mark.skipif(ed25519.lib is None, reason=f"the Rust Ed25519 library is off ({ed25519.why_off})")

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(min_size=0, max_size=2000)


def openssl_sign(seed: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


# RFC 8032 section 7.1: TEST 1, TEST 2, TEST 3 (seed, public key, message, signature)
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
     "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
     "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
     "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
     "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
     "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
     "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


# ---- 1. byte equality with OpenSSL -----------------------------------------------------------

@native_only
@settings(max_examples=300, deadline=None)
@given(seed=seeds, message=messages)
def test_native_signature_is_openssls(seed: bytes, message: bytes) -> None:
    signer = ed25519.Signer(seed)
    key = crypto.SigningKey.from_seed(seed)
    assert signer.public_key == key.public_key
    expected = openssl_sign(seed, message)
    assert signer.sign(message) == expected
    assert key.sign(message) == expected


@native_only
def test_signing_key_uses_the_native_signer_once() -> None:
    key = crypto.SigningKey.from_seed(os.urandom(32))
    key.sign(b"first")
    chosen = key._sign
    assert isinstance(getattr(chosen, "__self__", None), ed25519.Signer)
    key.sign(b"second")
    assert key._sign is chosen


# ---- 2. RFC 8032 test vectors -----------------------------------------------------------------

@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032, ids=["TEST 1", "TEST 2", "TEST 3"])
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    seed_b, msg = bytes.fromhex(seed), bytes.fromhex(message)
    key = crypto.SigningKey.from_seed(seed_b)
    assert key.public_key.hex() == public
    assert key.sign(msg).hex() == signature
    assert openssl_sign(seed_b, msg).hex() == signature
    if ed25519.lib is not None:
        signer = ed25519.Signer(seed_b)
        assert signer.public_key.hex() == public
        assert signer.sign(msg).hex() == signature


# ---- 3. libsodium accepts the signatures -------------------------------------------------------

@native_only
@settings(max_examples=150, deadline=None)
@given(seed=seeds, message=messages)
def test_libsodium_accepts_native_signatures(seed: bytes, message: bytes) -> None:
    signer = ed25519.Signer(seed)
    sig = signer.sign(message)
    assert crypto_sign_open(sig + message, signer.public_key) == message
    assert crypto.verify(signer.public_key, message, sig)


# ---- 4. AGENTTRAIL_NATIVE=0: OpenSSL signs, the same bytes ------------------------------------

_OFF_SCRIPT = """
import json, sys
from agenttrail import crypto
from agenttrail.native import ed25519
cases = [(bytes.fromhex(s), bytes.fromhex(m)) for s, m in json.loads(sys.stdin.read())]
keys = [crypto.SigningKey.from_seed(s) for s, _ in cases]
sigs = [k.sign(m).hex() for k, (_, m) in zip(keys, cases)]
print(json.dumps({"lib": ed25519.lib is None, "why": ed25519.why_off, "sigs": sigs,
                  "openssl": all(k._sign.__self__ is k.private for k in keys)}))
"""


def test_agenttrail_native_0_signs_identically_with_openssl() -> None:
    cases = [(os.urandom(32), os.urandom(n)) for n in (0, 1, 63, 64, 200, 1999, 2000)]
    cases += [(bytes.fromhex(seed), bytes.fromhex(msg)) for seed, _, msg, _ in RFC8032]
    stdin = json.dumps([[s.hex(), m.hex()] for s, m in cases])
    out = subprocess.run([sys.executable, "-c", _OFF_SCRIPT], input=stdin, capture_output=True, text=True,
                         check=True, env={**os.environ, "AGENTTRAIL_NATIVE": "0"}).stdout
    found = json.loads(out)
    assert found["lib"] is True and found["why"] == "AGENTTRAIL_NATIVE=0" and found["openssl"] is True
    here = [crypto.SigningKey.from_seed(s).sign(m).hex() for s, m in cases]
    assert found["sigs"] == here == [openssl_sign(s, m).hex() for s, m in cases]


# ---- 5. SigningKey keeps its behaviour ---------------------------------------------------------

def test_bytes_like_messages_sign_as_before_and_other_types_are_refused() -> None:
    seed = os.urandom(32)
    key = crypto.SigningKey.from_seed(seed)
    expected = openssl_sign(seed, b"abcd")
    for message in (b"abcd", bytearray(b"abcd"), memoryview(b"abcd"), memoryview(b"xabcdx")[1:5]):
        assert key.sign(message) == expected
    for wrong in ("abcd", 4, None):
        with pytest.raises(TypeError):
            key.sign(wrong)  # type: ignore[arg-type]
    with pytest.raises(BufferError):
        key.sign(memoryview(b"abcdabcd")[::2])  # type: ignore[arg-type]


def test_copies_equality_and_repr_are_unaffected_by_the_chosen_signer() -> None:
    seed = os.urandom(32)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    key, fresh = crypto.SigningKey.from_private(private), crypto.SigningKey.from_private(private)
    sig = key.sign(b"m")  # key has chosen its signer, fresh not yet
    assert key == fresh and hash(key) == hash(fresh)
    for other in (copy.copy(key), copy.deepcopy(key)):
        assert other == key and other.sign(b"m") == sig
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"
    assert seed.hex() not in repr(key) + repr(key._sign)


def test_signing_from_many_threads_at_once() -> None:
    seed = os.urandom(32)
    key = crypto.SigningKey.from_seed(seed)
    msgs = [os.urandom(i) for i in range(0, 400, 7)]
    expected = [openssl_sign(seed, m) for m in msgs]
    results: list[list[bytes]] = []

    def work() -> None:
        results.append([key.sign(m) for m in msgs])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 6


@native_only
def test_a_native_signer_with_another_public_key_falls_back_to_openssl(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    seed = os.urandom(32)
    wrong = SimpleNamespace(public_key=bytes(32), sign=lambda m: bytes(64))
    monkeypatch.setattr(crypto._native, "Signer", lambda s: wrong)
    key = crypto.SigningKey.from_seed(seed)
    with caplog.at_level(logging.ERROR, logger="agenttrail.crypto"):
        assert key.sign(b"m") == openssl_sign(seed, b"m")
    assert key.key_id in caplog.text and seed.hex() not in caplog.text


# ---- 6. the Signer wrapper ----------------------------------------------------------------------

@native_only
@pytest.mark.parametrize("seed", [b"", b"\x01" * 31, b"\x01" * 33, bytearray(32), "x" * 32])
def test_signer_refuses_a_seed_that_is_not_32_bytes(seed: object) -> None:
    with pytest.raises(ValueError):
        ed25519.Signer(seed)  # type: ignore[arg-type]


@native_only
def test_signer_is_shared_by_copies_and_never_pickled() -> None:
    signer = ed25519.Signer(os.urandom(32))
    assert copy.copy(signer) is signer and copy.deepcopy(signer) is signer
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        pickle.dumps(crypto.SigningKey.generate())


@native_only
def test_signers_are_freed() -> None:
    # each one's secret is zeroized and freed in __del__; many made and dropped must not fail
    seed = os.urandom(32)
    sigs = {ed25519.Signer(seed).sign(b"m") for _ in range(3000)}
    assert sigs == {openssl_sign(seed, b"m")}
