"""The signed event envelope: value type, canonical signing bytes, Avro encode/decode, sign/verify.

The byte layout of :func:`signing_bytes` is specified in ``docs/signing.md``; the vectors in
``tests/vectors/envelope_v1.json`` pin it.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field, replace
from typing import Any

from agenttrail import crypto
from agenttrail.errors import InvalidEvent
from agenttrail.kafka.topics import TENANT_ID_RE
from agenttrail.schemas.canonical import canonical_json, uuid7
from agenttrail.schemas.codec import decode, encode
from agenttrail.schemas.registry import ENVELOPE_SCHEMAS, ENVELOPE_V1

EVENT_TYPES: tuple[str, ...] = tuple(
    next(f for f in ENVELOPE_V1.writer["fields"] if f["name"] == "type")["type"]["symbols"])
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)

SIGNING_DOMAIN = b"agenttrail/event/v1\n"
MAX_ID_CHARS = 256

_u32 = struct.Struct(">I").pack


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    tenant_id: str
    agent_id: str
    session_id: str
    seq: int
    ts: int  # epoch microseconds, UTC
    type: str
    payload: bytes  # RFC 8785 canonical JSON (may be erased to b"" later)
    payload_sha256: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    key_id: str = ""
    signature: bytes = b""

    def to_record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "tenant_id": self.tenant_id, "agent_id": self.agent_id,
            "session_id": self.session_id, "seq": self.seq, "ts": self.ts, "type": self.type,
            "payload": self.payload, "payload_sha256": self.payload_sha256,
            "attributes": self.attributes, "key_id": self.key_id, "signature": self.signature,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Envelope:
        return cls(rec["event_id"], rec["tenant_id"], rec["agent_id"], rec["session_id"], rec["seq"],
                   rec["ts"], rec["type"], rec["payload"], rec["payload_sha256"], rec["attributes"],
                   rec["key_id"], rec["signature"])

    def payload_json(self) -> Any:
        """The payload parsed (InvalidEvent("malformed") if it is not JSON)."""
        try:
            return json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("malformed", f"payload is not JSON: {exc}") from None


_seq_ts = struct.Struct(">qq").pack
_NO_ATTRIBUTES = _u32(0)


def signing_bytes(env: Envelope) -> bytes:
    """The bytes the Ed25519 signature covers (docs/signing.md): every field but ``signature``
    and ``payload``, length-prefixed in a fixed order, attributes sorted by key.

    Written flat (one join, no helper calls): it runs once per event in the verifier and the audit."""
    try:
        ev, te, ag, se = (env.event_id.encode("utf-8"), env.tenant_id.encode("utf-8"),
                          env.agent_id.encode("utf-8"), env.session_id.encode("utf-8"))
        ty, kid, ph = env.type.encode("utf-8"), env.key_id.encode("utf-8"), env.payload_sha256
        if env.attributes:
            attrs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in env.attributes.items())
            attr_part = _u32(len(attrs)) + b"".join(_u32(len(k)) + k + _u32(len(v)) + v for k, v in attrs)
        else:
            attr_part = _NO_ATTRIBUTES
        return b"".join((
            SIGNING_DOMAIN, _u32(len(ev)), ev, _u32(len(te)), te, _u32(len(ag)), ag, _u32(len(se)), se,
            _seq_ts(env.seq, env.ts), _u32(len(ty)), ty, _u32(len(ph)), ph, attr_part, _u32(len(kid)), kid,
        ))
    except UnicodeEncodeError:
        raise InvalidEvent("bad_field", "string field is not valid UTF-8 text") from None
    except (struct.error, AttributeError, TypeError) as exc:
        raise InvalidEvent("bad_field", f"envelope field out of range or of the wrong type: {exc}") from None


def encode_envelope(env: Envelope) -> bytes:
    return encode(ENVELOPE_V1, env.to_record())


def decode_envelope(data: bytes) -> Envelope:
    """Decode one envelope; unknown fingerprint -> unknown_schema, broken bytes -> malformed."""
    _, record = decode(data, ENVELOPE_SCHEMAS)
    return Envelope.from_record(record)


def check_fields(env: Envelope) -> None:
    """Structural checks a well-formed envelope passes (InvalidEvent("bad_field") otherwise)."""
    problems: list[str] = []
    if not TENANT_ID_RE.fullmatch(env.tenant_id):
        problems.append(f"tenant_id {env.tenant_id!r} is not a valid tenant id")
    for name in ("event_id", "agent_id", "session_id", "key_id"):
        value = getattr(env, name)
        if not value or len(value) > MAX_ID_CHARS:
            problems.append(f"{name} must be 1-{MAX_ID_CHARS} characters")
    if env.type not in _EVENT_TYPE_SET:
        problems.append(f"type {env.type!r} is not one of {', '.join(EVENT_TYPES)}")
    if not 0 <= env.seq < 1 << 63:
        problems.append(f"seq {env.seq} out of range")
    if not 0 <= env.ts < 1 << 63:
        problems.append(f"ts {env.ts} out of range")
    if len(env.payload_sha256) != 32:
        problems.append("payload_sha256 must be 32 bytes")
    if env.signature and len(env.signature) != crypto.SIGNATURE_LEN:
        problems.append("signature must be 64 bytes")
    if problems:
        raise InvalidEvent("bad_field", "; ".join(problems))


def build_envelope(*, key: crypto.SigningKey, tenant_id: str, agent_id: str, session_id: str, seq: int,
                   type: str, payload: Any, attributes: dict[str, str] | None = None,
                   ts: int | None = None, event_id: str | None = None) -> Envelope:
    """Canonicalise ``payload``, hash it, fill the envelope and sign it with ``key``."""
    body = canonical_json(payload)
    now_us = time.time_ns() // 1000 if ts is None else ts
    if not isinstance(now_us, int) or not 0 <= now_us < (1 << 48) * 1000:
        raise InvalidEvent("bad_field", f"ts {now_us!r} is not epoch microseconds within the UUIDv7 range")
    env = Envelope(
        event_id=event_id or uuid7(now_us // 1000), tenant_id=tenant_id, agent_id=agent_id,
        session_id=session_id, seq=seq, ts=now_us, type=type, payload=body,
        payload_sha256=crypto.sha256(body), attributes=dict(attributes or {}), key_id=key.key_id,
    )
    check_fields(env)
    return Envelope(env.event_id, env.tenant_id, env.agent_id, env.session_id, env.seq, env.ts, env.type,
                    body, env.payload_sha256, env.attributes, env.key_id, key.sign(signing_bytes(env)))


def sign_envelope(env: Envelope, key: crypto.SigningKey) -> Envelope:
    return replace(env, key_id=key.key_id, signature=key.sign(signing_bytes(replace(env, key_id=key.key_id))))


def verify_signature(env: Envelope, public_key: bytes) -> bool:
    """The signature over signing_bytes(env) checks out with ``public_key`` (never raises)."""
    try:
        message = signing_bytes(env)
    except InvalidEvent:
        return False
    return crypto.verify(public_key, message, env.signature)


def payload_matches(env: Envelope) -> bool:
    """The payload (if not erased) hashes to payload_sha256."""
    return not env.payload or crypto.sha256(env.payload) == env.payload_sha256


def verify_envelope(env: Envelope, public_key: bytes) -> bool:
    """Signature valid and payload (unless erased) matching its hash: what an agent's event must pass."""
    return payload_matches(env) and verify_signature(env, public_key)
