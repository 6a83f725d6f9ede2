"""verify: the checks a raw event passes before it may enter a chain. Pure: bytes in, Envelope out.

Every rejection is an ``InvalidEvent`` whose ``reason`` is one of ``dlq.REASONS``. The order of the
checks is the one in DESIGN.md, cheapest first, so a flood of garbage costs little.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from agenttrail import crypto
from agenttrail.errors import InvalidEvent
from agenttrail.native import fastpath
from agenttrail.processors.retention import RetentionPolicy, is_expired
from agenttrail.schemas.canonical import canonical_json, is_canonical_fast
from agenttrail.schemas.envelope import Envelope, check_fields, signing_bytes
from agenttrail.schemas.envelope_fast import decode_signed

MICROS = 1_000_000


class TenantLike(Protocol):
    status: str
    retention_days: int


class KeyStatusLike(Protocol):
    valid: bool
    reason: str | None
    public_key: bytes | None
    agent_id: str | None


class RegistryLike(Protocol):
    """What verify needs of the control-plane view (agenttrail.control.view.RegistryView)."""

    def tenant(self, tenant_id: str) -> TenantLike | None: ...

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> KeyStatusLike: ...


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    max_event_bytes: int = 900_000
    clock_skew_micros: int = 300 * MICROS
    keep_forever_types: frozenset[str] = frozenset({"lesson"})
    check_canonical_payload: bool = True


@dataclass(frozen=True, slots=True)
class Verified:
    envelope: Envelope
    signing_bytes: bytes


@dataclass(frozen=True, slots=True)
class Checked:
    """An event that passed every check before its signature's (``check_event``)."""

    envelope: Envelope
    signing_bytes: bytes
    public_key: bytes
    retention_days: int


def verify_event(value: bytes | None, key: bytes | None, topic_tenant: str, registry: RegistryLike,
                 policy: VerifyPolicy, now_micros: int) -> Verified:
    """Return the verified envelope with its signing bytes, or raise InvalidEvent(reason)."""
    checked = check_event(value, key, topic_tenant, registry, policy)
    signed = crypto.verify(checked.public_key, checked.signing_bytes, checked.envelope.signature)
    return finish_event(checked, signed, policy, now_micros)


def verify_events(messages: Sequence[tuple[bytes | None, bytes | None]], topic_tenants: Sequence[str],
                  registry: RegistryLike, policy: VerifyPolicy, now_micros: int) -> list[Verified | InvalidEvent]:
    """``verify_event`` of each (value, key) with the same answers, the signatures of all events
    that reach that check verified as one batch. Never raises: each answer is a Verified or the
    InvalidEvent that ``verify_event`` would raise (anything else becomes a ``malformed`` one)."""
    answers: list[Checked | Verified | InvalidEvent] = []
    for (value, key), tenant in zip(messages, topic_tenants, strict=True):
        try:
            answers.append(check_event(value, key, tenant, registry, policy))
        except InvalidEvent as exc:
            answers.append(exc)
        except Exception as exc:  # fail closed: a poison message is dead-lettered, never a crash loop
            answers.append(InvalidEvent("malformed", f"unverifiable: {type(exc).__name__}: {exc}"[:500]))
    pending = [a for a in answers if type(a) is Checked]
    signed = iter(crypto.verify_many([c.public_key for c in pending], [c.signing_bytes for c in pending],
                                     [c.envelope.signature for c in pending]))
    out: list[Verified | InvalidEvent] = []
    for answer in answers:
        if type(answer) is Checked:
            try:
                answer = finish_event(answer, next(signed), policy, now_micros)
            except InvalidEvent as exc:
                answer = exc
        out.append(answer)  # type: ignore[arg-type]
    return out


def check_event(value: bytes | None, key: bytes | None, topic_tenant: str, registry: RegistryLike,
                policy: VerifyPolicy) -> Checked:
    """Every check before the signature's, in DESIGN.md order; raise InvalidEvent(reason)."""
    if value is None or len(value) == 0:
        raise InvalidEvent("malformed", "empty message")
    if len(value) > policy.max_event_bytes:
        raise InvalidEvent("oversize", f"{len(value)} bytes > limit {policy.max_event_bytes}")
    if not key:
        raise InvalidEvent("empty_key", "message has no key (the session id)")
    env, message = decode_signed(value)  # malformed / unknown_schema
    check_fields(env)  # bad_field
    if env.tenant_id != topic_tenant:
        raise InvalidEvent("tenant_mismatch",
                           f"envelope tenant {env.tenant_id!r} in topic of tenant {topic_tenant!r}")
    if key != env.session_id.encode("utf-8"):
        raise InvalidEvent("key_mismatch", "message key is not the envelope's session id")
    tenant = registry.tenant(topic_tenant)
    if tenant is None:
        raise InvalidEvent("unknown_tenant", f"tenant {topic_tenant!r} is not registered")
    if tenant.status != "active":
        raise InvalidEvent("tenant_disabled", f"tenant {topic_tenant!r} is {tenant.status}")
    status = registry.agent_key(topic_tenant, env.key_id, env.ts, env.agent_id)
    if not status.valid or status.public_key is None:
        reason = status.reason or "unknown_key"
        raise InvalidEvent(reason, f"agent {env.agent_id!r} key {env.key_id!r}")
    if not env.payload:  # erasure happens later, in the stores; an event arrives with its payload
        raise InvalidEvent("malformed", "empty payload")
    if crypto.sha256(env.payload) != env.payload_sha256:
        raise InvalidEvent("payload_hash_mismatch", "payload does not hash to payload_sha256")
    if policy.check_canonical_payload:
        _check_canonical(env.payload)
    if message is None:  # the generic decoder was needed
        message = signing_bytes(env)
    return Checked(env, message, status.public_key, tenant.retention_days)


def finish_event(checked: Checked, signed: bool, policy: VerifyPolicy, now_micros: int) -> Verified:
    """The signature's answer (``signed``) and the checks after it; raise InvalidEvent(reason)."""
    env = checked.envelope
    if not signed:
        raise InvalidEvent("bad_signature", f"signature does not verify with key {env.key_id!r}")
    if env.ts - now_micros > policy.clock_skew_micros:  # late events are fine (offline spool)
        raise InvalidEvent("clock_skew", f"ts is {(env.ts - now_micros) / MICROS:.0f}s in the future")
    days = checked.retention_days
    if is_expired(_retention(days, policy.keep_forever_types), env.ts, now_micros, env.type):
        raise InvalidEvent("expired", f"event is older than the tenant's {days}-day retention")
    return Verified(env, checked.signing_bytes)


@lru_cache(maxsize=256)
def _retention(days: int, keep_forever_types: frozenset[str]) -> RetentionPolicy:
    """One validated policy per (days, kept types), not one per event."""
    return RetentionPolicy(days, keep_forever_types)


_canonical_plain = fastpath.canonical_plain if fastpath is not None else None


def _check_canonical(payload: bytes) -> None:
    # The C check answers True only where the Python one certainly does; anything else is decided here.
    if (_canonical_plain is not None and _canonical_plain(payload)) or is_canonical_fast(payload):
        return
    try:  # rejected: say whether it is not JSON at all, not representable, or not in RFC 8785 form
        parsed = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidEvent("malformed", f"payload is not UTF-8 JSON: {exc}") from None
    canonical_json(parsed)  # NaN, Infinity, unsafe integers: InvalidEvent("bad_field")
    raise InvalidEvent("payload_not_canonical", "payload is not RFC 8785 canonical JSON")
