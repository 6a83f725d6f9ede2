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
- ``agentkey:<t>:<agent>:<gen>:<key_id>``  a rotation to generation ``gen``; first one per gen wins.
- ``agent-revoke:<t>:<agent>``        permanent.
- ``agent-fp:<t>:<agent>:<sha256(fp)[:16]>``  each distinct machine fingerprint seen; two or more
                                      distinct ones flag the agent ``clone_detected``.
- ``servicekey:<service>:<key_id>``   a processor's checkpoint public key; old ones stay readable.

Secrets never appear here: API keys and registration keys are stored as SHA-256 hex digests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import rfc8785

from agenttrail.errors import AgentTrailError
from agenttrail.kafka.topics import validate_tenant_id

VERSION = 1

SCOPES = frozenset({
    "*", "events:read", "events:write", "sessions:read", "recall:read", "audit:read", "keys:admin",
    "lessons:read", "lessons:write", "lessons:*",
})
TENANT_STATUSES = frozenset({"active", "disabled"})

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # e.g. "ed25519:<16 hex>"
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
_SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_FINGERPRINT = 256


class InvalidRecord(AgentTrailError):
    """A registry record that does not parse or validate; readers skip it and log the key."""

    code = "invalid_record"


class ControlError(AgentTrailError):
    """A control-plane operation that cannot be done: duplicate tenant, bad scope, bad argument."""

    code = "control"


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidRecord(message)


def validate_id(value: object, what: str = "id") -> str:
    """Agent ids and registration key ids: 1-128 of [A-Za-z0-9_.-], no colon (entity keys use ':')."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidRecord(f"invalid {what} {value!r}")
    return value


def validate_key_id(value: object, what: str = "key id") -> str:
    """Key ids may also hold a colon (``ed25519:…``); they only ever end an entity key."""
    if not isinstance(value, str) or not _KEY_ID_RE.fullmatch(value):
        raise InvalidRecord(f"invalid {what} {value!r}")
    return value


def _tenant(value: str) -> None:
    try:
        validate_tenant_id(value)
    except AgentTrailError as exc:
        raise InvalidRecord(str(exc)) from None


def fingerprint_digest(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def _fingerprint(value: str) -> None:
    _check(0 < len(value) <= MAX_FINGERPRINT and value.isprintable(), "invalid machine fingerprint")


def _ts(value: int | None, what: str) -> None:
    _check(value is None or 0 <= value < 2**53, f"{what} out of range")


@dataclass(frozen=True, slots=True)
class _Record:
    KIND: ClassVar[str] = ""

    @property
    def key(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND, "v": VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, obj: object) -> Any:
        """The one validating constructor: a JSON object -> record, or InvalidRecord."""
        _check(isinstance(obj, dict), "record is not a JSON object")
        assert isinstance(obj, dict)
        _check(obj.get("kind") == cls.KIND, f"kind is not {cls.KIND!r}")
        _check(obj.get("v") == VERSION, f"unsupported record version {obj.get('v')!r}")
        names = {f.name: f.type for f in fields(cls)}
        extra = set(obj) - set(names) - {"kind", "v"}
        _check(not extra, f"unknown fields {sorted(extra)}")
        kwargs = {name: _convert(obj.get(name), str(typ), name) for name, typ in names.items()}
        try:
            return cls(**kwargs)
        except InvalidRecord:
            raise
        except (AgentTrailError, TypeError, ValueError) as exc:
            raise InvalidRecord(f"{cls.KIND}: {exc}") from None


def _convert(value: object, typ: str, name: str) -> object:
    optional = typ.endswith("| None")
    if value is None:
        _check(optional, f"missing field {name!r}")
        return None
    base = typ.removesuffix(" | None")
    if base == "str":
        _check(isinstance(value, str), f"{name} must be a string")
        return value
    if base == "int":
        _check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
        return value
    if base == "bytes":
        _check(isinstance(value, str), f"{name} must be base64 text")
        assert isinstance(value, str)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord(f"{name} is not base64") from None
    if base == "tuple[str, ...]":
        _check(isinstance(value, list) and all(isinstance(v, str) for v in value), f"{name}: strings")
        assert isinstance(value, list)
        return tuple(value)
    raise InvalidRecord(f"unsupported field type {typ}")  # pragma: no cover - a programming error


@dataclass(frozen=True, slots=True)
class TenantRecord(_Record):
    KIND: ClassVar[str] = "tenant"
    tenant_id: str
    retention_days: int
    created_at: int

    def __post_init__(self) -> None:
        _tenant(self.tenant_id)
        _check(1 <= self.retention_days <= 36_500, "retention_days must be 1..36500")
        _ts(self.created_at, "created_at")

    @property
    def key(self) -> str:
        return f"tenant:{self.tenant_id}"


@dataclass(frozen=True, slots=True)
class TenantStatusRecord(_Record):
    KIND: ClassVar[str] = "tenant_status"
    tenant_id: str
    status: str
    at: int

    def __post_init__(self) -> None:
        _tenant(self.tenant_id)
        _check(self.status in TENANT_STATUSES, f"unknown tenant status {self.status!r}")
        _ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"tenant-status:{self.tenant_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord(_Record):
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
        _tenant(self.tenant_id)
        _check(bool(_PREFIX_RE.fullmatch(self.prefix)), "invalid key prefix")
        _check(bool(_HEX64_RE.fullmatch(self.secret_sha256)), "secret_sha256 must be 64 hex digits")
        _check(set(self.scopes) <= SCOPES, f"unknown scopes {sorted(set(self.scopes) - SCOPES)}")
        _check(len(self.name) <= 128, "name too long")
        _ts(self.created_at, "created_at")
        _ts(self.expires_at, "expires_at")
        if self.rotated_from is not None:
            validate_key_id(self.rotated_from)

    @property
    def key(self) -> str:
        return f"apikey:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRotateRecord(_Record):
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
        _tenant(self.tenant_id)
        _ts(self.at, "at")
        _ts(self.valid_until, "valid_until")
        _check(self.valid_until >= self.at, "valid_until before at")

    @property
    def key(self) -> str:
        return f"apikey-rotate:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyRevokeRecord(_Record):
    KIND: ClassVar[str] = "api_key_revoke"
    key_id: str
    tenant_id: str
    at: int

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        _tenant(self.tenant_id)
        _ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"apikey-revoke:{self.key_id}"


@dataclass(frozen=True, slots=True)
class ApiKeyUsedRecord(_Record):
    KIND: ClassVar[str] = "api_key_used"
    key_id: str
    tenant_id: str
    last_used_at: int

    def __post_init__(self) -> None:
        validate_key_id(self.key_id)
        _tenant(self.tenant_id)
        _ts(self.last_used_at, "last_used_at")

    @property
    def key(self) -> str:
        return f"apikey-used:{self.key_id}"


@dataclass(frozen=True, slots=True)
class RegistrationKeyRecord(_Record):
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
        _tenant(self.tenant_id)
        _check(bool(_PREFIX_RE.fullmatch(self.prefix)), "invalid key prefix")
        _check(bool(_HEX64_RE.fullmatch(self.secret_sha256)), "secret_sha256 must be 64 hex digits")
        _check(len(self.name) <= 128, "name too long")
        _ts(self.created_at, "created_at")
        _ts(self.expires_at, "expires_at")

    @property
    def key(self) -> str:
        return f"rk:{self.rk_id}"


@dataclass(frozen=True, slots=True)
class RedeemRecord(_Record):
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
        _tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        validate_key_id(self.key_id)
        _check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        _fingerprint(self.fingerprint)
        _ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"rk-redeem:{self.rk_id}:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class AgentKeyRecord(_Record):
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
        _tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        validate_key_id(self.key_id)
        _check(1 <= self.generation < 2**31, "generation must be >= 1 (0 is the registration)")
        _check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        _ts(self.at, "at")
        _ts(self.previous_valid_until, "previous_valid_until")

    @property
    def key(self) -> str:
        return f"agentkey:{self.tenant_id}:{self.agent_id}:{self.generation}:{self.key_id}"


@dataclass(frozen=True, slots=True)
class AgentRevokeRecord(_Record):
    KIND: ClassVar[str] = "agent_revoke"
    tenant_id: str
    agent_id: str
    at: int
    reason: str

    def __post_init__(self) -> None:
        _tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        _ts(self.at, "at")
        _check(len(self.reason) <= 256, "reason too long")

    @property
    def key(self) -> str:
        return f"agent-revoke:{self.tenant_id}:{self.agent_id}"


@dataclass(frozen=True, slots=True)
class AgentFingerprintRecord(_Record):
    KIND: ClassVar[str] = "agent_fingerprint"
    tenant_id: str
    agent_id: str
    fingerprint: str
    at: int

    def __post_init__(self) -> None:
        _tenant(self.tenant_id)
        validate_id(self.agent_id, "agent id")
        _fingerprint(self.fingerprint)
        _ts(self.at, "at")

    @property
    def key(self) -> str:
        return f"agent-fp:{self.tenant_id}:{self.agent_id}:{fingerprint_digest(self.fingerprint)}"


@dataclass(frozen=True, slots=True)
class ServiceKeyRecord(_Record):
    """A processor's checkpoint-signing public key, published per service."""

    KIND: ClassVar[str] = "service_key"
    service: str
    key_id: str
    public_key: bytes
    created_at: int

    def __post_init__(self) -> None:
        _check(bool(_SERVICE_RE.fullmatch(self.service)), f"invalid service name {self.service!r}")
        validate_key_id(self.key_id)
        _check(len(self.public_key) == 32, "public_key must be 32 bytes (Ed25519 raw)")
        _ts(self.created_at, "created_at")

    @property
    def key(self) -> str:
        return f"servicekey:{self.service}:{self.key_id}"


Record = (
    TenantRecord | TenantStatusRecord | ApiKeyRecord | ApiKeyRotateRecord | ApiKeyRevokeRecord
    | ApiKeyUsedRecord | RegistrationKeyRecord | RedeemRecord | AgentKeyRecord | AgentRevokeRecord
    | AgentFingerprintRecord | ServiceKeyRecord
)
RECORD_TYPES: dict[str, type[_Record]] = {
    cls.KIND: cls
    for cls in (
        TenantRecord, TenantStatusRecord, ApiKeyRecord, ApiKeyRotateRecord, ApiKeyRevokeRecord,
        ApiKeyUsedRecord, RegistrationKeyRecord, RedeemRecord, AgentKeyRecord, AgentRevokeRecord,
        AgentFingerprintRecord, ServiceKeyRecord,
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
    _check(isinstance(obj, dict), "record is not a JSON object")
    cls = RECORD_TYPES.get(obj.get("kind"))  # type: ignore[arg-type]
    _check(cls is not None, f"unknown record kind {obj.get('kind')!r}")
    assert cls is not None
    record = cls.from_json(obj)
    if key is not None:
        _check(key == record.key.encode(), "Kafka key does not match the record's entity id")
    return record  # type: ignore[return-value]
