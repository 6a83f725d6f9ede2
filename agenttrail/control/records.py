"""Records of the compacted control-plane topic ``agenttrail.registry``.

Every record is a frozen dataclass with one validating constructor from JSON (``from_json``), encoded
as RFC 8785 canonical JSON with a ``kind`` and a version ``v``. The Kafka key is a stable entity id.

Compaction keeps only the last record per key, so each *fact* that must survive gets its own key and
never shares one with an unrelated fact:

- ``tenant:<t>``                      tenant settings (retention); last write wins on purpose.
- ``tenant-status:<t>``               active / disabled; last write wins.
- ``apikey:<id>``                     the key's hash, prefix, scopes; written once.
- ``apikey-rotate:<id>`` / ``apikey-revoke:<id>``  written once each; a touch or a rotation can never
                                      overwrite a revocation because they live under different keys.
- ``apikey-used:<id>``                last-used time (batched); max wins.
- ``rk:<id>``                         a registration key's hash and expiry; written once.
- ``rk-redeem:<rk_id>:<agent_id>``    one record per redeem attempt. Compaction never drops a record
                                      whose key is unique and never reorders the log, so "the first
                                      redeem in the log wins" gives the same answer before and after
                                      compaction. (Writing redeems as updates to ``rk:<id>`` would let
                                      compaction keep the *last* redeem and crown the loser.)
                                      The winning redeem *is* the agent's registration (generation 0).
- ``rk-revoke:<rk_id>:<revoke_id>``   one record per revoke attempt, keyed uniquely for the same
                                      reason as redeems: whichever of the first revoke and the first
                                      redeem comes first in the log wins, before and after compaction.
- ``agentkey:<t>:<agent>:<gen>:<key_id>``  a rotation to generation ``gen``; first one per gen wins.
- ``agent-revoke:<t>:<agent>``        permanent.
- ``agent-fp:<t>:<agent>:<sha256(fp)[:16]>``  each distinct machine fingerprint seen; two or more
                                      distinct ones flag the agent ``clone_detected``.
- ``servicekey:<service>:<key_id>``   a processor's checkpoint public key; old ones stay readable.

Secrets never appear here: API keys and registration keys are stored as SHA-256 hex digests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import rfc8785

from agenttrail.control.record_base import (
    HEX64_RE,
    PREFIX_RE,
    SCOPES,
    SERVICE_RE,
    TENANT_STATUSES,
    VERSION,
    BaseRecord,
    ControlError,
    InvalidRecord,
    check,
    check_fingerprint,
    check_tenant,
    check_ts,
    fingerprint_digest,
    validate_id,
    validate_key_id,
)

__all__ = ["SCOPES", "VERSION", "ControlError", "InvalidRecord", "validate_id", "validate_key_id"]


@dataclass(frozen=True, slots=True)
class TenantRecord(BaseRecord):
    KIND: ClassVar[str] = "tenant"
    tenant_id: str
    retention_days: int
    created_at: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant_id)
        check(1 <= self.retention_days <= 36_500, "retention_days must be 1..36500")
        check_ts(self.created_at, "created_at")

    @property
    def key(self) -> str:
        return f"tenant:{self.tenant_id}"


@dataclass(frozen=True, slots=True)
class TenantStatusRecord(BaseRecord):
    KIND: ClassVar[str] = "tenant_status"
    tenant_id: str
    status: str
    at: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant_id)
        check(self.status in TENANT_STATUSES, f"unknown tenant status {self.status!r}")
        check_ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"tenant-status:{self.tenant_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord(BaseRecord):
    KIND: ClassVar[str] = "api_key"
    key_id: str
    tenant_id: str
    prefix: str
    secret_sha256: str
    scopes: tuple[str, ...]
    name: str
    created_at: int
    expires_at: int | None
    rotated_from: str | None

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        check_tenant(self.tenant_id)
        check(bool(PREFIX_RE.fullmatch(self.prefix)), "invalid key prefix")
        check(bool(HEX64_RE.fullmatch(self.secret_sha256)), "secret_sha256 must be 64 hex digits")
        check(set(self.scopes) <= SCOPES, f"unknown scopes {sorted(set(self.scopes) - SCOPES)}")
        check(len(self.name) <= 128, "name too long")
        check_ts(self.created_at, "created_at")
        check_ts(self.expires_at, "expires_at")
        if self.rotated_from is not None:
            validate_key_id(self.rotated_from)

    @property
    def key(self) -> str:
        return f"apikey:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRotateRecord(BaseRecord):
    """The key ``key_id`` was replaced by ``new_key_id``; it stays valid until ``valid_until``."""

    KIND: ClassVar[str] = "api_key_rotate"
    key_id: str
    tenant_id: str
    new_key_id: str
    at: int
    valid_until: int

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        validate_key_id(self.new_key_id)
        check_tenant(self.tenant_id)
        check_ts(self.at, "at")
        check_ts(self.valid_until, "valid_until")
        check(self.valid_until >= self.at, "valid_until before at")

    @property
    def key(self) -> str:
        return f"apikey-rotate:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRevokeRecord(BaseRecord):
    KIND: ClassVar[str] = "api_key_revoke"
    key_id: str
    tenant_id: str
    at: int

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        check_tenant(self.tenant_id)
        check_ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"apikey-revoke:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyUsedRecord(BaseRecord):
    KIND: ClassVar[str] = "api_key_used"
    key_id: str
    tenant_id: str
    last_used_at: int

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        check_tenant(self.tenant_id)
        check_ts(self.last_used_at, "last_used_at")

    @property
    def key(self) -> str:
        return f"apikey-used:{self.key_id}"


@dataclass(frozen=True, slots=True)
class RegistrationKeyRecord(BaseRecord):
    KIND: ClassVar[str] = "registration_key"
    rk_id: str
    tenant_id: str
    prefix: str
    secret_sha256: str
    name: str
    created_at: int
    expires_at: int

    def __post_init__(self) -> None:
        validate_id(self.rk_id, "registration key id")
        check_tenant(self.tenant_id)
        check(bool(PREFIX_RE.fullmatch(self.prefix)), "invalid key prefix")
        check(bool(HEX64_RE.fullmatch(self.secret_sha256)), "secret_sha256 must be 64 hex digits")
        check(len(self.name) <= 128, "name too long")
        check_ts(self.created_at, "created_at")
        check_ts(self.expires_at, "expires_at")

    @property
    def key(self) -> str:
        return f"rk:{self.rk_id}"


@dataclass(frozen=True, slots=True)
class RedeemRecord(BaseRecord):
    """An attempt to redeem ``rk_id``; the first valid one in the log registers the agent."""

    KIND: ClassVar[str] = "registration_redeem"
    rk_id: str
    tenant_id: str
    agent_id: str
    key_id: str
    public_key: bytes
    fingerprint: str
    at: int

    def __post_init__(self) -> None:
        validate_id(self.rk_id, "registration key id")
        check_tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        validate_key_id(self.key_id)
        check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        check_fingerprint(self.fingerprint)
        check_ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"rk-redeem:{self.rk_id}:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class RegistrationKeyRevokeRecord(BaseRecord):
    """``rk_id`` may no longer be redeemed: it wins over any redeem after it in the log and loses to
    one before it (that agent stays registered; revoke the agent to undo it)."""

    KIND: ClassVar[str] = "registration_key_revoke"
    rk_id: str
    tenant_id: str
    revoke_id: str
    at: int

    def __post_init__(self) -> None:
        validate_id(self.rk_id, "registration key id")
        check_tenant(self.tenant_id)
        validate_id(self.revoke_id, "revoke id")
        check_ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"rk-revoke:{self.rk_id}:{self.revoke_id}"


@dataclass(frozen=True, slots=True)
class AgentKeyRecord(BaseRecord):
    """Rotation of an agent to ``generation``; the previous key stays valid until ``previous_valid_until``."""

    KIND: ClassVar[str] = "agent_key"
    tenant_id: str
    agent_id: str
    generation: int
    key_id: str
    public_key: bytes
    at: int
    previous_valid_until: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        validate_key_id(self.key_id)
        check(1 <= self.generation < 2**31, "generation must be >= 1 (0 is the registration)")
        check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        check_ts(self.at, "at")
        check_ts(self.previous_valid_until, "previous_valid_until")

    @property
    def key(self) -> str:
        return f"agentkey:{self.tenant_id}:{self.agent_id}:{self.generation}:{self.key_id}"


@dataclass(frozen=True, slots=True)
class AgentRevokeRecord(BaseRecord):
    KIND: ClassVar[str] = "agent_revoke"
    tenant_id: str
    agent_id: str
    at: int
    reason: str

    def __post_init__(self) -> None:
        check_tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        check_ts(self.at, "at")
        check(len(self.reason) <= 256, "reason too long")

    @property
    def key(self) -> str:
        return f"agent-revoke:{self.tenant_id}:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class AgentFingerprintRecord(BaseRecord):
    KIND: ClassVar[str] = "agent_fingerprint"
    tenant_id: str
    agent_id: str
    fingerprint: str
    at: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        check_fingerprint(self.fingerprint)
        check_ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"agent-fp:{self.tenant_id}:{self.agent_id}:{fingerprint_digest(self.fingerprint)}"


@dataclass(frozen=True, slots=True)
class ServiceKeyRecord(BaseRecord):
    """A processor's checkpoint-signing public key, published per service."""

    KIND: ClassVar[str] = "service_key"
    service: str
    key_id: str
    public_key: bytes
    created_at: int

    def __post_init__(self) -> None:
        check(bool(SERVICE_RE.fullmatch(self.service)), f"invalid service name {self.service!r}")
        validate_key_id(self.key_id)
        check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        check_ts(self.created_at, "created_at")

    @property
    def key(self) -> str:
        return f"servicekey:{self.service}:{self.key_id}"


Record = (
    TenantRecord | TenantStatusRecord | ApiKeyRecord | ApiKeyRotateRecord | ApiKeyRevokeRecord
    | ApiKeyUsedRecord | RegistrationKeyRecord | RedeemRecord | RegistrationKeyRevokeRecord
    | AgentKeyRecord | AgentRevokeRecord | AgentFingerprintRecord | ServiceKeyRecord
)
RECORD_TYPES: dict[str, type[BaseRecord]] = {
    cls.KIND: cls
    for cls in (
        TenantRecord, TenantStatusRecord, ApiKeyRecord, ApiKeyRotateRecord, ApiKeyRevokeRecord,
        ApiKeyUsedRecord, RegistrationKeyRecord, RedeemRecord, RegistrationKeyRevokeRecord,
        AgentKeyRecord, AgentRevokeRecord, AgentFingerprintRecord, ServiceKeyRecord,
    )
}


def encode_record(record: Record) -> tuple[bytes, bytes]:
    """(Kafka key, canonical JSON value) for a record."""
    return record.key.encode(), rfc8785.dumps(record.to_json())


def decode_record(value: bytes, key: bytes | None = None) -> Record:
    """Parse a registry value; the Kafka key, when given, must match the record's entity id."""
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRecord("record is not JSON") from None
    check(isinstance(obj, dict), "record is not a JSON object")
    cls = RECORD_TYPES.get(obj.get("kind"))  # type: ignore[arg-type]
    check(cls is not None, f"unknown record kind {obj.get('kind')!r}")
    assert cls is not None
    record = cls.from_json(obj)
    if key is not None:
        check(key == record.key.encode(), "Kafka key does not match the record's entity id")
    return record  # type: ignore[return-value]
