"""The service's Ed25519 signing key (checkpoints, retention anchors), in C2SP signed-note terms.

C2SP signed-note, Ed25519 (https://c2sp.org/signed-note):
  key hash = SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4]   (0x01: the Ed25519 type)
  signature line = "— <key name> " base64(key hash ‖ 64-byte signature) over the note text
  verifier key   = "<key name>+<key hash, 8 hex digits>+" base64(0x01 ‖ public key)
The verifier key string is what the registry publishes and outside verifiers (e.g. Go's
golang.org/x/mod/sumdb/note) read. The key file lives at `<Settings.home>/service_key.pem` (0600),
created on first start; several workers starting at once end up sharing the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.errors import ConfigError, VerificationError

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "service_key.pem"
DEFAULT_KEY_NAME = "agenttrail-service"
ALG_ED25519 = 0x01
KEY_HASH_LEN = 4
# key names: non-empty, no whitespace (any Unicode space) and no "+"
_KEY_NAME_RE = re.compile(r"^[^\s+]+$")


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or not _KEY_NAME_RE.fullmatch(name) or not name.isprintable():
        raise ValueError(f"invalid signed-note key name {name!r}: non-empty, no spaces, no '+'")
    return name


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key hash for an Ed25519 key (4 bytes)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:KEY_HASH_LEN]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A named Ed25519 public key, as read from a verifier key string."""

    name: str
    public_key: bytes
    key_hash: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        validate_key_name(name)
        if len(public_key) != crypto.PUBLIC_LEN:
            raise ValueError(f"an Ed25519 public key is {crypto.PUBLIC_LEN} bytes, got {len(public_key)}")
        return cls(name, bytes(public_key), note_key_hash(name, public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse "<name>+<hash hex>+<base64(0x01 ‖ key)>"; raises VerificationError if malformed."""
        parts = vkey.strip().split("+", 2)  # the base64 key may itself contain "+"
        if len(parts) != 3:
            raise VerificationError("malformed verifier key", {"vkey": vkey})
        name, hash_hex, key_b64 = parts
        try:
            raw = base64.b64decode(key_b64, validate=True)
            declared = bytes.fromhex(hash_hex)
            verifier = cls.from_public_key(name, raw[1:])
        except (ValueError, binascii.Error):
            raise VerificationError("malformed verifier key", {"vkey": vkey}) from None
        if raw[:1] != bytes([ALG_ED25519]):
            raise VerificationError("verifier key is not Ed25519", {"vkey": vkey})
        if declared != verifier.key_hash:
            raise VerificationError("verifier key hash does not match the key", {"vkey": vkey})
        return verifier

    @property
    def vkey(self) -> str:
        key = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash.hex()}+{key}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        return crypto.verify(self.public_key, message, signature)


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """The service's named signing key."""

    name: str
    key: crypto.SigningKey

    @classmethod
    def generate(cls, name: str = DEFAULT_KEY_NAME) -> ServiceKey:
        return cls(validate_key_name(name), crypto.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes, name: str = DEFAULT_KEY_NAME) -> ServiceKey:
        return cls(validate_key_name(name), crypto.SigningKey.from_seed(seed))

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_public_key(self.name, self.key.public_key)

    @property
    def key_hash(self) -> bytes:
        return note_key_hash(self.name, self.key.public_key)

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def __repr__(self) -> str:  # never print key material
        return f"ServiceKey(name={self.name!r}, key_hash={self.key_hash.hex()})"


def service_key_path(settings: Settings) -> Path:
    return Path(settings.home) / KEY_FILE_NAME


def load_or_create_service_key(settings: Settings, name: str = DEFAULT_KEY_NAME) -> ServiceKey:
    """Load `<home>/service_key.pem`, creating it (0600) on first start.

    Creation is race-free across processes: the key is written to a private temp file and
    hard-linked into place, so when two workers start together both load the one that won.
    """
    validate_key_name(name)
    path = service_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        crypto.save_private_key(tmp, crypto.SigningKey.generate())
        try:
            os.link(tmp, path)
            logger.info("created service signing key %s", path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot create service key {path}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
    key = ServiceKey(name, crypto.load_private_key(path))
    logger.debug("service key %s loaded: %s", path, key.vkey)
    return key
