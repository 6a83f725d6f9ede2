"""Secrets and ids of the control plane: API keys ``at_live_…``, registration keys ``rk_…``.

A secret is 256 random bits, lowercase base32 without padding (52 characters). Only its SHA-256 is
stored, together with a short public prefix (the first 10 characters of the random part) used to
find the candidate records; the digests are then compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from agenttrail.errors import AuthError

API_KEY_PREFIX = "at_live_"
RK_PREFIX = "rk_"
LOOKUP_CHARS = 10
_SECRET_CHARS = 52  # 256 bits in base32 without padding
_B32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _random_b32(nbytes: int) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()


def new_id(kind: str) -> str:
    """A short random id such as ``ak_3xq…`` (80 bits); ids are public, unlike secrets."""
    return f"{kind}_{_random_b32(10)}"


def new_api_key_secret() -> str:
    return API_KEY_PREFIX + _random_b32(32)


def new_rk_secret() -> str:
    return RK_PREFIX + _random_b32(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def lookup_prefix(secret: object, scheme: str) -> str:
    """The public lookup prefix of a well-formed secret of ``scheme``; AuthError otherwise.

    The error never repeats the secret.
    """
    if not isinstance(secret, str) or not secret.startswith(scheme):
        raise CredentialRejected("malformed", f"malformed credential: expected a {scheme}… key")
    body = secret[len(scheme):]
    if len(body) != _SECRET_CHARS or not set(body) <= _B32:
        raise CredentialRejected("malformed", f"malformed credential: expected a {scheme}… key")
    return body[:LOOKUP_CHARS]


class CredentialRejected(AuthError):
    """An API or registration key that is refused; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


REJECT_REASONS = frozenset({
    "malformed", "unknown", "revoked", "rotated_out", "expired", "redeemed", "tenant_disabled",
    "unknown_tenant", "wrong_tenant",
})
