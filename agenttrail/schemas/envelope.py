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
from agenttrail.native import fastpath
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
_HEAD_36 = SIGNING_DOMAIN + _u32(36)  # the domain tag and the length of a UUID event_id

# Encoded parts shared by many events, bounded (cleared when full): the three ids of a session,
# and (type, len(payload_sha256), key_id, at most one attribute) -> the parts around the hash.
_PARTS_MAX = 8192
_ids_parts: dict[tuple[str, str, str], bytes] = {}
_type_tail_parts: dict[tuple[object, ...], tuple[bytes, bytes]] = {}


def _str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _u32(len(raw)) + raw


def _ids_part(ids: tuple[str, str, str]) -> bytes:
    part = _str(ids[0]) + _str(ids[1]) + _str(ids[2])
    if len(_ids_parts) >= _PARTS_MAX:
        _ids_parts.clear()
    _ids_parts[ids] = part
    return part


def attributes_part(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """u32(count) ‖ for each (key, value) in UTF-8, sorted by key: str(key) ‖ str(value)."""
    pairs.sort()
    return _u32(len(pairs)) + b"".join(_u32(len(k)) + k + _u32(len(v)) + v for k, v in pairs)


def _type_and_tail(env: Envelope, hash_len: int) -> tuple[bytes, bytes]:
    """str(type) ‖ u32(len(payload_sha256)), and the attributes (sorted by UTF-8 key) ‖ str(key_id)."""
    tail = attributes_part([(k.encode("utf-8"), v.encode("utf-8")) for k, v in env.attributes.items()])
    return _str(env.type) + _u32(hash_len), tail + _str(env.key_id)


def _cached_type_and_tail(env: Envelope, key: tuple[object, ...]) -> tuple[bytes, bytes]:
    parts = _type_and_tail(env, len(env.payload_sha256))
    if len(_type_tail_parts) >= _PARTS_MAX:
        _type_tail_parts.clear()
    _type_tail_parts[key] = parts
    return parts


def signing_bytes(env: Envelope) -> bytes:
    """The bytes the Ed25519 signature covers (docs/signing.md): every field but ``signature``
    and ``payload``, length-prefixed in a fixed order, attributes sorted by key.

    It runs once per event in the verifier and the audit, so the parts that repeat across events
    (session ids; type, key id and a single attribute) come from small caches keyed by the
    strings themselves; only event_id, seq, ts and payload_sha256 are encoded every time."""
    try:
        ev = env.event_id.encode("utf-8")
        ph = env.payload_sha256
        ids = (env.tenant_id, env.agent_id, env.session_id)
        ids_part = _ids_parts.get(ids) or _ids_part(ids)
        attributes = env.attributes
        if len(attributes) > 1:
            type_part, tail = _type_and_tail(env, len(ph))
        else:
            key = (env.type, len(ph), env.key_id, *attributes.items())
            type_part, tail = _type_tail_parts.get(key) or _cached_type_and_tail(env, key)
        head = _HEAD_36 if len(ev) == 36 else SIGNING_DOMAIN + _u32(len(ev))
        return b"".join((head, ev, ids_part, _seq_ts(env.seq, env.ts), type_part, ph, tail))
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


_tenant_ok = TENANT_ID_RE.fullmatch
_SIGNED_64 = 1 << 63


def check_fields(env: Envelope) -> None:
    """Structural checks a well-formed envelope passes (InvalidEvent("bad_field") otherwise)."""
    # Every event takes this: one expression for the well-formed case, the itemised list otherwise.
    try:
        if (_tenant_ok(env.tenant_id) and 0 < len(env.event_id) <= MAX_ID_CHARS
                and 0 < len(env.agent_id) <= MAX_ID_CHARS and 0 < len(env.session_id) <= MAX_ID_CHARS
                and 0 < len(env.key_id) <= MAX_ID_CHARS and env.type in _EVENT_TYPE_SET
                and 0 <= env.seq < _SIGNED_64 and 0 <= env.ts < _SIGNED_64 and len(env.payload_sha256) == 32
                and (not env.signature or len(env.signature) == crypto.SIGNATURE_LEN)):
            return
    except TypeError:
        pass  # a field of the wrong type: the list below says which
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


if fastpath is not None:  # the C fast path builds Envelopes and signing bytes of this exact layout
    fastpath.setup(Envelope, EVENT_TYPES, SIGNING_DOMAIN, ENVELOPE_V1.header)
