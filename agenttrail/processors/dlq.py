"""Dead letters: every rejected raw event, with its original bytes, a reason code and its source.

Value on `agenttrail.dlq` (JSON, UTF-8), key = the tenant of the source topic::

    {"reason", "detail", "tenant_topic", "partition", "offset", "ts", "original_b64"}

`reason` comes from the closed list `REASONS` (docs/contracts.md); anything else is refused when a
record is built or read (fail closed). `ts` is when the event was dead-lettered (epoch micros, UTC).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from agenttrail.errors import AgentTrailError, InvalidEvent
from agenttrail.kafka.topics import tenant_of_topic

REASONS: frozenset[str] = frozenset(
    {
        "malformed",
        "unknown_schema",
        "tenant_mismatch",
        "unknown_tenant",
        "tenant_disabled",
        "unknown_agent",
        "agent_revoked",
        "unknown_key",
        "key_expired",
        "bad_signature",
        "payload_hash_mismatch",
        "payload_not_canonical",
        "clock_skew",
        "oversize",
        "duplicate_seq",
        "bad_field",
        "empty_key",
        "key_mismatch",
        "expired",
    }
)
MAX_DETAIL_CHARS = 1_000
MAX_ORIGINAL_BYTES = 256 * 1024  # base64 grows it by 4/3: far below Kafka's 1 MB
_FIELDS = frozenset({"reason", "detail", "tenant_topic", "partition", "offset", "ts", "original_b64"})


class InvalidDeadLetter(AgentTrailError, ValueError):
    """A dead letter that cannot be built or read (unknown reason, bad JSON, wrong field types)."""

    code = "invalid_dead_letter"


def _int(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidDeadLetter(f"dead letter field {name!r} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class DlqRecord:
    reason: str
    detail: str
    tenant_topic: str
    partition: int
    offset: int
    ts: int  # epoch micros when dead-lettered
    original: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or self.reason not in REASONS:
            raise InvalidDeadLetter(f"unknown dead-letter reason {self.reason!r:.80}")
        if not isinstance(self.detail, str) or not isinstance(self.tenant_topic, str):
            raise InvalidDeadLetter("dead letter detail and tenant_topic must be strings")
        if not isinstance(self.original, bytes):
            raise InvalidDeadLetter("dead letter original must be bytes")
        _int(self.partition, "partition")
        _int(self.offset, "offset")
        _int(self.ts, "ts")

    @classmethod
    def from_invalid(
        cls,
        error: InvalidEvent,
        topic: str,
        partition: int,
        offset: int,
        original: bytes | None,
        now_micros: int,
    ) -> DlqRecord:
        """The dead letter for a rejection raised by verify (its reason must be in REASONS)."""
        return cls.rejection(error.reason, str(error), topic, partition, offset, original, now_micros)

    @classmethod
    def rejection(cls, reason: str, detail: str, topic: str, partition: int, offset: int,
                  original: bytes | None, now_micros: int) -> DlqRecord:
        """A dead letter that always fits in one Kafka message: an original over MAX_ORIGINAL_BYTES
        is cut, and its full length and SHA-256 are named in the detail (the source offset stays)."""
        raw = bytes(original or b"")
        detail = detail[:MAX_DETAIL_CHARS]
        if len(raw) > MAX_ORIGINAL_BYTES:
            detail += (f" [original truncated to {MAX_ORIGINAL_BYTES} of {len(raw)} bytes; "
                       f"sha256 {hashlib.sha256(raw).hexdigest()}]")
            raw = raw[:MAX_ORIGINAL_BYTES]
        return cls(reason=reason, detail=detail, tenant_topic=topic, partition=partition, offset=offset,
                   ts=now_micros, original=raw)

    @property
    def tenant(self) -> str | None:
        return tenant_of_topic(self.tenant_topic)

    def key(self) -> bytes | None:
        """Kafka key: the tenant of the source topic (None if it is not a tenant topic)."""
        tenant = self.tenant
        return tenant.encode() if tenant is not None else None

    def to_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "tenant_topic": self.tenant_topic,
            "partition": self.partition,
            "offset": self.offset,
            "ts": self.ts,
            "original_b64": base64.b64encode(self.original).decode("ascii"),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DlqRecord:
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidDeadLetter("dead letter is not UTF-8 JSON") from None
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise InvalidDeadLetter(f"dead letter must be an object with exactly {sorted(_FIELDS)}")
        encoded = obj["original_b64"]
        if not isinstance(encoded, str):
            raise InvalidDeadLetter("original_b64 must be a string")
        try:
            original = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDeadLetter("original_b64 is not base64") from None
        return cls(
            reason=obj["reason"],
            detail=obj["detail"],
            tenant_topic=obj["tenant_topic"],
            partition=obj["partition"],
            offset=obj["offset"],
            ts=obj["ts"],
            original=original,
        )
