"""Ed25519 keys, signatures, key ids and key files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agenttrail import crypto
from agenttrail.crypto import SigningKey
from agenttrail.errors import ConfigError

# RFC 8032 section 7.1, test 1 (empty message)
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
                        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def test_rfc8032_vector() -> None:
    key = SigningKey.from_seed(RFC_SEED)
    assert key.public_key == RFC_PUB
    assert key.sign(b"") == RFC_SIG
    assert crypto.verify(RFC_PUB, b"", RFC_SIG)


def test_verify_returns_false_instead_of_raising() -> None:
    seed, pub = crypto.generate_keypair()
    sig = crypto.sign(seed, b"message")
    assert crypto.verify(pub, b"message", sig)
    assert not crypto.verify(pub, b"messagE", sig)
    assert not crypto.verify(RFC_PUB, b"message", sig)
    assert not crypto.verify(pub, b"message", sig[:-1])
    assert not crypto.verify(pub, b"message", bytes(64))
    assert not crypto.verify(b"\xff" * 32, b"message", sig)  # not a curve point
    assert not crypto.verify(pub[:31], b"message", sig)


def test_key_id_is_derived_from_the_public_key() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.key_id == "ed25519:" + crypto.sha256_hex(a.public_key)[:16]
    assert a.key_id != b.key_id
    assert SigningKey.from_seed(a.seed).key_id == a.key_id
    with pytest.raises(ValueError):
        crypto.key_id_for(b"short")
    assert "seed" not in repr(a) and a.seed.hex() not in repr(a)


def test_pem_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = crypto.save_private_key(tmp_path / "keys" / "agent.pem", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert crypto.load_private_key(path).public_key == key.public_key


def test_load_raw_and_hex_seeds(tmp_path: Path) -> None:
    raw, hexed = tmp_path / "raw", tmp_path / "hex"
    raw.write_bytes(RFC_SEED)
    hexed.write_text(RFC_SEED.hex() + "\n")
    assert crypto.load_private_key(raw).public_key == RFC_PUB
    assert crypto.load_private_key(hexed).public_key == RFC_PUB


BROKEN_PEM = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("content", [b"", b"not a key", BROKEN_PEM])
def test_load_garbage_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        crypto.load_private_key(path)
    with pytest.raises(ConfigError):
        crypto.load_private_key(tmp_path / "missing")


def test_as_signing_key_accepts_the_usual_forms() -> None:
    key = SigningKey.from_seed(RFC_SEED)
    assert crypto.as_signing_key(RFC_SEED).public_key == RFC_PUB
    assert crypto.as_signing_key(key.private).public_key == RFC_PUB
    assert crypto.as_signing_key(key) is key
    with pytest.raises(TypeError):
        crypto.as_signing_key("seed")  # type: ignore[arg-type]


def test_sodium_and_openssl_agree_on_valid_and_tampered_signatures() -> None:
    """libsodium, and the verifier in use (native or libsodium), accept and refuse exactly what
    OpenSSL does on honest and tampered signatures."""
    import os

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agenttrail import crypto as c

    assert c.HAVE_SODIUM, "PyNaCl is a dependency"
    for i in range(200):
        key = c.SigningKey.generate()
        message = os.urandom(i % 97)
        signature = key.sign(message)
        if i % 2:
            flipped = bytearray(signature)
            flipped[i % 64] ^= 1 << (i % 8)
            signature = bytes(flipped)
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, message)
            openssl = True
        except InvalidSignature:
            openssl = False
        assert c.verify(key.public_key, message, signature) is openssl
        assert c.sodium_verify(key.public_key, message, signature) is openssl
