"""What the registry view answers: frozen values, safe to hand out (no secret, no hash).

``RegistryView`` (view.py) builds them from the records it folded; the CLI and the API print them.
Times are epoch microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

AGENT_KEY_REASONS = ("unknown_agent", "agent_revoked", "unknown_key", "key_expired")


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    status: str
    retention_days: int
    created_at: int

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    tenant_id: str
    key_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be listed about an API key: never the secret, never its hash."""

    key_id: str
    tenant_id: str
    prefix: str
    name: str
    scopes: tuple[str, ...]
    created_at: int
    expires_at: int | None
    rotated_from: str | None
    rotated_to: str | None
    valid_until: int | None  # set once rotated (end of grace) or revoked
    revoked_at: int | None
    last_used_at: int | None

    def status(self, now: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.valid_until is not None:
            return "rotated_out" if now > self.valid_until else "grace"
        return "active"


@dataclass(frozen=True, slots=True)
class RegistrationKeyInfo:
    rk_id: str
    tenant_id: str
    prefix: str
    name: str
    created_at: int
    expires_at: int
    redeemed_by: str | None
    redeemed_at: int | None
    revoked_at: int | None = None  # a key is either redeemed or revoked, never both

    def status(self, now: int) -> str:
        if self.redeemed_by is not None:
            return "redeemed"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now > self.expires_at else "active"


@dataclass(frozen=True, slots=True)
class AgentInfo:
    tenant_id: str
    agent_id: str
    key_id: str
    public_key: bytes
    generation: int
    registered_at: int
    rk_id: str
    fingerprints: tuple[str, ...]
    clone_detected: bool
    revoked_at: int | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


@dataclass(frozen=True, slots=True)
class AgentKeyStatus:
    """The verifier's answer: is ``key_id`` valid for ``tenant_id`` at that time, and if not, why."""

    valid: bool
    reason: str | None  # one of AGENT_KEY_REASONS when not valid
    tenant_id: str
    key_id: str
    agent_id: str | None = None
    public_key: bytes | None = None
    generation: int | None = None
    clone_detected: bool = False


@dataclass(frozen=True, slots=True)
class ServiceKey:
    service: str
    key_id: str
    public_key: bytes
    created_at: int
