"""Shared machinery of registry records: validation helpers and the JSON base class."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar

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
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_FINGERPRINT = 256


class InvalidRecord(AgentTrailError):
    """A registry record that does not parse or validate; readers skip it and log the key."""

    code = "invalid_record"


class ControlError(AgentTrailError):
    """A control-plane operation that cannot be done: duplicate tenant, bad scope, bad argument."""

    code = "control"


def check(cond: bool, message: str) -> None:
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


def check_tenant(value: str) -> None:
    try:
        validate_tenant_id(value)
    except AgentTrailError as exc:
        raise InvalidRecord(str(exc)) from None


def fingerprint_digest(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def check_fingerprint(value: str) -> None:
    check(0 < len(value) <= MAX_FINGERPRINT and value.isprintable(), "invalid machine fingerprint")


def check_ts(value: int | None, what: str) -> None:
    check(value is None or 0 <= value < 2**53, f"{what} out of range")


@dataclass(frozen=True, slots=True)
class BaseRecord:
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
        check(isinstance(obj, dict), "record is not a JSON object")
        assert isinstance(obj, dict)
        check(obj.get("kind") == cls.KIND, f"kind is not {cls.KIND!r}")
        check(obj.get("v") == VERSION, f"unsupported record version {obj.get('v')!r}")
        names = {f.name: f.type for f in fields(cls)}
        extra = set(obj) - set(names) - {"kind", "v"}
        check(not extra, f"unknown fields {sorted(extra)}")
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
        check(optional, f"missing field {name!r}")
        return None
    base = typ.removesuffix(" | None")
    if base == "str":
        check(isinstance(value, str), f"{name} must be a string")
        return value
    if base == "int":
        check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer")
        return value
    if base == "bytes":
        check(isinstance(value, str), f"{name} must be base64 text")
        assert isinstance(value, str)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord(f"{name} is not base64") from None
    if base == "tuple[str, ...]":
        check(isinstance(value, list) and all(isinstance(v, str) for v in value), f"{name}: strings")
        assert isinstance(value, list)
        return tuple(value)
    raise InvalidRecord(f"unsupported field type {typ}")  # pragma: no cover - a programming error
