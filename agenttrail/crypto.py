"""Ed25519 keys, signatures and key ids; SHA-256 helpers. Pure functions over bytes plus key files.

Keys travel as raw bytes: a private key is its 32-byte seed, a public key its 32 raw bytes.
``verify`` never raises on a bad signature or key: it returns False (fail closed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agenttrail.errors import ConfigError

logger = logging.getLogger(__name__)

KEY_ID_PREFIX = "ed25519:"
SEED_LEN = 32
PUBLIC_LEN = 32
SIGNATURE_LEN = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id_for(public_key: bytes) -> str:
    """``ed25519:`` + the first 16 hex digits of SHA-256(raw public key)."""
    if len(public_key) != PUBLIC_LEN:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_LEN} bytes, got {len(public_key)}")
    return KEY_ID_PREFIX + hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key with its raw public key and key id (the agent's identity).

    ``sign`` uses the Rust library of agenttrail/native when it is loaded (~0.6 of OpenSSL's time per
    signature; Ed25519 signing is deterministic, so the bytes are OpenSSL's), else OpenSSL."""

    private: Ed25519PrivateKey
    public_key: bytes
    key_id: str
    # the signing function, chosen on the first signature (a native signer holds the expanded key)
    _sign: Callable[[bytes], bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an Ed25519 seed is {SEED_LEN} bytes, got {len(seed)}")
        return cls.from_private(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> SigningKey:
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private=private, public_key=public, key_id=key_id_for(public))

    @property
    def seed(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())

    def sign(self, message: bytes) -> bytes:
        sign = self._sign
        if sign is None:
            sign = self._choose_signer()
        if type(message) is bytes:
            return sign(message)
        return self.private.sign(message)  # bytearray, memoryview...: OpenSSL takes any buffer

    def _choose_signer(self) -> Callable[[bytes], bytes]:
        sign = self.private.sign
        if _native.lib is not None:
            signer = _native.Signer(self.seed)
            own = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if signer.public_key == own:
                sign = signer.sign
            else:  # never expected: a broken build
                logger.error("the native Ed25519 signer derived another public key for %s: OpenSSL signs",
                             self.key_id)
        object.__setattr__(self, "_sign", sign)
        return sign

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(key_id={self.key_id!r})"


def as_signing_key(key: SigningKey | Ed25519PrivateKey | bytes) -> SigningKey:
    """Accept a SigningKey, a cryptography private key, or a 32-byte seed."""
    if isinstance(key, SigningKey):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return SigningKey.from_private(key)
    if isinstance(key, bytes | bytearray):
        return SigningKey.from_seed(bytes(key))
    raise TypeError(f"expected an Ed25519 private key or 32-byte seed, got {type(key).__name__}")


def generate_keypair() -> tuple[bytes, bytes]:
    """(32-byte seed, 32-byte raw public key)."""
    key = SigningKey.generate()
    return key.seed, key.public_key


def sign(private_key: SigningKey | Ed25519PrivateKey | bytes, message: bytes) -> bytes:
    return as_signing_key(private_key).sign(message)


# Verification is the pipeline's hot path. Three implementations, the first one present is used:
# - the Rust library of agenttrail/native (built at bootstrap): ~2x libsodium for one signature, and
#   `verify_many` checks a whole batch at once for ~1/5 of libsodium's time per signature. Its rule is
#   RFC 8032's cofactored equation with libsodium's strictness (canonical S and R, no small-order R),
#   the same for one signature and for a batch (docs/signing.md, section 6);
# - libsodium (PyNaCl): cofactorless, as strict on encodings; ~1.8x OpenSSL here;
# - OpenSSL through `cryptography`, which also does key generation, signing and key files.
# Every path accepts only keys of prime order (`public_key_ok`; libsodium's own check lets a key with a
# small-order component through). They all accept every honestly made signature and differ only on
# signatures their own key's holder crafted with a small-order component in R (accepted by the
# cofactored rule alone).
try:
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBad
    HAVE_SODIUM = True
except ImportError:  # pragma: no cover - PyNaCl is a dependency; keep a working fallback
    HAVE_SODIUM = False


def sodium_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's own answer (PyNaCl), no key check of ours: the reference the native verifier is
    compared with in the benchmarks."""
    try:
        _sodium_open(signature + message, public_key)
    except _SodiumBad:
        return False
    return True


from agenttrail.native import ed25519 as _native  # noqa: E402  (after the fallbacks it replaces)

VERIFIER = "native" if _native.lib is not None else "libsodium" if HAVE_SODIUM else "openssl"
BATCH_MIN = 4  # below this a batch saves nothing over one-by-one


@lru_cache(maxsize=65_536)
def _sodium_key_ok(raw: bytes) -> bool:
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    return bool(crypto_core_ed25519_is_valid_point(raw))


@lru_cache(maxsize=65_536)
def _public_key(raw: bytes) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(signature) != SIGNATURE_LEN or len(public_key) != PUBLIC_LEN:
        return False
    if _native.lib is not None:
        return _native.verify(bytes(public_key), bytes(message), bytes(signature))
    if HAVE_SODIUM:
        try:
            return _sodium_key_ok(bytes(public_key)) and sodium_verify(bytes(public_key), bytes(message),
                                                                        bytes(signature))
        except (ValueError, TypeError):
            return False
    key = _public_key(bytes(public_key))
    if key is None:
        return False
    try:
        key.verify(bytes(signature), message)
    except InvalidSignature:
        return False
    return True


def public_key_ok(public_key: bytes) -> bool:
    """True iff these are 32 bytes of a canonically encoded point of prime order: the only public
    keys an honest key generation makes, and the only ones the verifiers here accept."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_LEN:
        return False
    if _native.lib is not None:
        return _native.key(public_key) is not None
    return _sodium_key_ok(public_key)


def verify_many(public_keys: Sequence[bytes], messages: Sequence[bytes],
                signatures: Sequence[bytes]) -> list[bool]:
    """``verify`` of each (key, message, signature), the same answers, checked as one batch where
    the native library is present. A batch with a bad signature in it is re-checked one by one."""
    n = len(signatures)
    if len(public_keys) != n or len(messages) != n:
        raise ValueError("verify_many needs as many keys and messages as signatures")
    if _native.lib is not None and n >= BATCH_MIN:
        try:
            if _native.verify_all(public_keys, messages, signatures):
                return [True] * n
        except (OSError, TypeError, ValueError):
            pass  # no randomness, or a value of the wrong type: decide one by one
    return [verify(k, m, s) for k, m, s in zip(public_keys, messages, signatures, strict=True)]


# -- key files ----------------------------------------------------------------------------------
def save_private_key(path: Path, key: SigningKey | Ed25519PrivateKey | bytes) -> Path:
    """Write a PKCS#8 PEM private key readable only by its owner (mode 0600)."""
    pem = as_signing_key(key).private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)
    return path


def load_private_key(path: Path) -> SigningKey:
    """Read a PEM (PKCS#8) key, a raw 32-byte seed, or a 64-hex-digit seed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("private key %s is readable by group/others (mode %o)", path, mode)
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return SigningKey.from_private(key)
    if len(data) == SEED_LEN:
        return SigningKey.from_seed(data)
    text = data.strip()
    if len(text) == 2 * SEED_LEN:
        try:
            return SigningKey.from_seed(bytes.fromhex(text.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            pass
    raise ConfigError(f"{path} is not an Ed25519 private key (PEM, 32 raw bytes or 64 hex digits)")
