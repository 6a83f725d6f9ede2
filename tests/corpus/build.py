"""The bad-input corpus: deterministic raw Kafka messages (key, value) and the DLQ reason each must get.

Nothing here is a hand-written binary: every case is generated from a ``World`` (who exists in the
registry, with which keys) and a fixed seed, so the same world always gives the same bytes.
Unit tests run the corpus through ``verify_event`` / ``SessionTable`` against a ``RegistryView``;
the integration test produces it to a real broker between valid events and reads the DLQ.

A case may need valid events before it (``before``), e.g. a duplicate needs the original chained.
``topic_tenant`` is the tenant whose events topic the message is written to.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_writer

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.control.view import RegistryView
from agenttrail.schemas.codec import MAGIC
from agenttrail.schemas.envelope import Envelope, build_envelope, encode_envelope, signing_bytes
from agenttrail.schemas.registry import ENVELOPE_V1

DAY = 86_400 * 1_000_000
SEED = 20240607


def seeded_key(label: str) -> crypto.SigningKey:
    """A signing key derived from a label: the same label always gives the same key."""
    return crypto.SigningKey.from_seed(hashlib.sha256(f"agenttrail-corpus/{label}".encode()).digest())


@dataclass(frozen=True, slots=True)
class Identity:
    tenant_id: str
    agent_id: str
    key: crypto.SigningKey


@dataclass(frozen=True, slots=True)
class World:
    """Who the registry knows. The corpus is a pure function of this and ``now``."""

    tenant: str  # active tenant A: the topic most cases go to
    agent: Identity  # active agent of A
    other: Identity  # active agent of tenant B
    revoked: Identity  # agent of A, revoked
    rotated: Identity  # agent of A with its *old* key, rotated out with no grace
    disabled: Identity  # agent of a disabled tenant
    now: int  # epoch micros the events are stamped around
    retention_days: int = 90  # of tenant A
    max_event_bytes: int = 900_000
    tag: str = "c"  # makes session ids unique per run


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    reason: str
    topic_tenant: str
    key: bytes | None
    value: bytes | None
    before: tuple[tuple[bytes, bytes], ...] = field(default=())  # valid (key, value)s sent first


# A writer schema with the envelope's binary layout but loose types: strings as bytes (any byte
# sequence), the enum as an int (any index). Written behind the real envelope fingerprint.
_LOOSE = parse_schema({
    "type": "record", "name": "LooseEnvelope", "fields": [
        {"name": "event_id", "type": "bytes"}, {"name": "tenant_id", "type": "bytes"},
        {"name": "agent_id", "type": "bytes"}, {"name": "session_id", "type": "bytes"},
        {"name": "seq", "type": "long"}, {"name": "ts", "type": "long"}, {"name": "type", "type": "int"},
        {"name": "payload", "type": "bytes"}, {"name": "payload_sha256", "type": "bytes"},
        {"name": "attributes", "type": {"type": "map", "values": "bytes"}},
        {"name": "key_id", "type": "bytes"}, {"name": "signature", "type": "bytes"},
    ]})


def loose_encode(env: Envelope, **raw: Any) -> bytes:
    """Encode ``env`` as an envelope-v1 message, with any field replaced by raw (ill-typed) values."""
    rec: dict[str, Any] = {k: (v.encode() if isinstance(v, str) else v) for k, v in env.to_record().items()}
    rec["type"] = ENVELOPE_V1.writer["fields"][6]["type"]["symbols"].index(env.type)
    rec["attributes"] = {k: v.encode() for k, v in env.attributes.items()}
    rec.update(raw)
    out = BytesIO()
    out.write(ENVELOPE_V1.header)
    schemaless_writer(out, _LOOSE, rec)
    return out.getvalue()


def resign(env: Envelope, key: crypto.SigningKey) -> Envelope:
    """Sign ``env`` as it is (no field checks), keeping its key_id."""
    return replace(env, signature=key.sign(signing_bytes(env)))


def with_payload(env: Envelope, payload: bytes, key: crypto.SigningKey) -> Envelope:
    """Replace the payload bytes (hash kept consistent) and re-sign."""
    return resign(replace(env, payload=payload, payload_sha256=crypto.sha256(payload)), key)


class _Gen:
    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = random.Random(SEED)
        self.n = 0

    def session(self, name: str) -> str:
        return f"bad-{self.w.tag}-{name}"

    def event(self, who: Identity, name: str, *, seq: int = 0, ts: int | None = None, type: str = "message",
              payload: Any = None, attributes: dict[str, str] | None = None) -> Envelope:
        self.n += 1
        stamp = self.w.now + self.n if ts is None else ts
        event_id = f"0190c0de-0000-7000-8000-{self.n:012d}"
        return build_envelope(key=who.key, tenant_id=who.tenant_id, agent_id=who.agent_id,
                              session_id=self.session(name), seq=seq, type=type,
                              payload={"text": f"corpus {name}"} if payload is None else payload,
                              attributes=attributes, ts=stamp, event_id=event_id)

    def case(self, name: str, reason: str, env_or_value: Envelope | bytes | None, *,
             key: bytes | str | None = "session", topic: str | None = None,
             before: tuple[tuple[bytes, bytes], ...] = ()) -> Case:
        if isinstance(env_or_value, Envelope):
            value: bytes | None = encode_envelope(env_or_value)
            session = env_or_value.session_id
        else:
            value, session = env_or_value, self.session(name)
        k = session.encode() if key == "session" else key
        return Case(name, reason, topic or self.w.tenant, k, value, before)  # type: ignore[arg-type]


def build_corpus(world: World) -> list[Case]:
    """Every bad input of the corpus, in a fixed order; names are unique."""
    g = _Gen(world)
    w, a = world, world.agent
    ev = g.event
    cases: list[Case] = []
    add = cases.append

    # -- framing and decoding --------------------------------------------------------------------
    add(g.case("empty_value", "malformed", b""))
    add(g.case("garbage_bytes", "malformed", bytes(g.rng.randrange(256) for _ in range(200)).replace(MAGIC, b"")))
    good = encode_envelope(ev(a, "truncated"))
    add(g.case("truncated_avro", "malformed", good[: len(good) // 2]))
    add(g.case("header_only", "malformed", good[:10]))
    add(g.case("magic_only", "malformed", MAGIC))
    add(g.case("trailing_bytes", "malformed", good + b"\x00\x01"))
    fp = bytes(g.rng.randrange(256) for _ in range(8))
    add(g.case("unknown_fingerprint", "unknown_schema", MAGIC + fp + good[10:]))
    add(g.case("bad_type_enum", "malformed", loose_encode(ev(a, "bad_type_enum"), type=97)))
    add(g.case("non_utf8_agent_id", "malformed", loose_encode(ev(a, "non_utf8"), agent_id=b"agent-\xff\xfe")))
    add(g.case("surrogate_in_session_id", "malformed",
               loose_encode(ev(a, "surrogate"), session_id=b"s-\xed\xa0\x80"), key=b"s-\xed\xa0\x80"))
    add(g.case("negative_length_string", "malformed", good[:10] + b"\x03" + good[11:]))

    # -- structure (bad_field) -------------------------------------------------------------------
    add(g.case("negative_seq", "bad_field", resign(replace(ev(a, "negative_seq"), seq=-1), a.key)))
    add(g.case("negative_ts", "bad_field", resign(replace(ev(a, "negative_ts"), ts=-5), a.key)))
    add(g.case("bad_tenant_id_chars", "bad_field", loose_encode(ev(a, "bad_tenant"), tenant_id=b"Acme Corp!")))
    add(g.case("empty_event_id", "bad_field", loose_encode(ev(a, "empty_event_id"), event_id=b"")))
    add(g.case("long_agent_id", "bad_field", loose_encode(ev(a, "long_agent_id"), agent_id=b"a" * 300)))
    add(g.case("short_payload_hash", "bad_field", loose_encode(ev(a, "short_hash"), payload_sha256=b"\x01" * 16)))
    add(g.case("wrong_signature_length", "bad_field",
               loose_encode(ev(a, "sig_len"), signature=bytes(63))))
    nan = with_payload(ev(a, "payload_nan"), b"NaN", a.key)
    add(g.case("payload_nan", "bad_field", nan))

    # -- routing ----------------------------------------------------------------------------------
    add(g.case("empty_key", "empty_key", ev(a, "empty_key"), key=None))
    add(g.case("zero_length_key", "empty_key", ev(a, "zero_key"), key=b""))
    add(g.case("key_not_session", "key_mismatch", ev(a, "key_mismatch"), key=b"some-other-session"))
    add(g.case("other_tenant_event", "tenant_mismatch", ev(w.other, "cross_tenant")))
    add(g.case("disabled_tenant", "tenant_disabled", ev(w.disabled, "disabled"), topic=w.disabled.tenant_id))

    # -- identity ---------------------------------------------------------------------------------
    stranger = Identity(w.tenant, "ag-unknown-corpus", seeded_key("stranger"))
    add(g.case("unknown_agent", "unknown_agent", ev(stranger, "unknown_agent")))
    foreign = Identity(w.tenant, w.other.agent_id, w.other.key)  # B's agent and key, claiming tenant A
    add(g.case("agent_of_other_tenant", "unknown_agent", ev(foreign, "foreign_agent")))
    borrowed = Identity(w.tenant, a.agent_id, w.other.key)  # A's agent id, B's key
    add(g.case("key_of_other_tenant", "unknown_key", ev(borrowed, "foreign_key")))
    fresh = Identity(w.tenant, a.agent_id, seeded_key("unregistered"))
    add(g.case("unregistered_key", "unknown_key", ev(fresh, "unregistered_key")))
    add(g.case("revoked_agent", "agent_revoked", ev(w.revoked, "revoked")))
    add(g.case("rotated_out_key", "key_expired", ev(w.rotated, "rotated")))

    # -- integrity --------------------------------------------------------------------------------
    tampered = ev(a, "payload_tamper")
    body = b'{"text":"corpus payload_tamper!"}'
    add(g.case("payload_hash_mismatch", "payload_hash_mismatch", replace(tampered, payload=body)))
    add(g.case("payload_not_canonical", "payload_not_canonical",
               with_payload(ev(a, "not_canonical"), b'{"text": "x", "a": 1}', a.key)))
    add(g.case("payload_not_json", "malformed", with_payload(ev(a, "not_json"), b"not json at all", a.key)))
    add(g.case("payload_not_utf8", "malformed", with_payload(ev(a, "payload_latin1"), b'"caf\xe9"', a.key)))
    add(g.case("signed_by_other_key", "bad_signature",
               resign(ev(a, "wrong_signer"), seeded_key("impostor"))))
    add(g.case("seq_changed_after_signing", "bad_signature", replace(ev(a, "seq_tamper", seq=0), seq=1)))
    add(g.case("attribute_added_after_signing", "bad_signature",
               replace(ev(a, "attr_tamper"), attributes={"env": "prod"})))
    add(g.case("missing_signature", "bad_signature", replace(ev(a, "no_signature"), signature=b"")))
    add(g.case("flipped_signature_bit", "bad_signature", _flip(ev(a, "flip"))))

    # -- time -------------------------------------------------------------------------------------
    add(g.case("far_future", "clock_skew", ev(a, "future", ts=w.now + 30 * DAY)))
    add(g.case("ts_overflow", "clock_skew", resign(replace(ev(a, "ts_max"), ts=(1 << 63) - 1), a.key)))
    add(g.case("past_retention", "expired", ev(a, "expired", ts=w.now - (w.retention_days + 2) * DAY)))

    # -- size -------------------------------------------------------------------------------------
    add(g.case("oversize_payload", "oversize", _oversize(g, a, "big_payload", w.max_event_bytes, attrs=False)))
    add(g.case("huge_attributes", "oversize", _oversize(g, a, "big_attrs", w.max_event_bytes, attrs=True)))

    # -- sequence ---------------------------------------------------------------------------------
    orig = ev(a, "dup_exact", seq=0)
    first = (orig.session_id.encode(), encode_envelope(orig))
    add(g.case("duplicate_redelivery", "duplicate_seq", orig, before=(first,)))
    one = ev(a, "dup_other", seq=0)
    again = ev(a, "dup_other", seq=0, payload={"text": "a different event with the same seq"})
    add(g.case("duplicate_seq_new_content", "duplicate_seq", again,
               before=((one.session_id.encode(), encode_envelope(one)),)))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases


def _flip(env: Envelope) -> Envelope:
    sig = bytearray(env.signature)
    sig[10] ^= 0x01
    return replace(env, signature=bytes(sig))


def _oversize(g: _Gen, who: Identity, name: str, limit: int, *, attrs: bool) -> bytes:
    """An event just over the limit (a producer still accepts it: the broker allows ~1.1 MB)."""
    if attrs:
        env = g.event(who, name, attributes={"a": "x" * (limit // 2), "b": "y" * (limit // 2)})
    else:
        env = g.event(who, name, payload={"text": "x" * limit})
    return encode_envelope(env)


def poison_cases(world: World) -> list[Case]:
    """Inputs that once crashed verify (regressions: a RecursionError escaped json.loads)."""
    g = _Gen(world)
    deep = b"[" * 5_000 + b"]" * 5_000
    return [g.case("deeply_nested_payload", "malformed",
                   with_payload(g.event(world.agent, "deep"), deep, world.agent.key))]


def valid_event(world: World, who: Identity, session: str, seq: int, *, ts: int | None = None) -> Envelope:
    """A valid event (for interleaving with the corpus)."""
    return build_envelope(key=who.key, tenant_id=who.tenant_id, agent_id=who.agent_id, session_id=session,
                          seq=seq, type="message", payload={"role": "assistant", "text": f"ok {seq}"},
                          ts=world.now + seq if ts is None else ts)


def view_world(now: int, *, retention_days: int = 90, tag: str = "c") -> tuple[RegistryView, World]:
    """A RegistryView holding the corpus world (no broker): tenants A, B and D (disabled)."""
    view = RegistryView()
    t0 = now - DAY
    for tenant in ("corpus-a", "corpus-b", "corpus-d"):
        view.apply(cmd.plan_tenant(view, tenant, retention_days if tenant == "corpus-a" else 90, t0))

    def register(tenant: str, label: str) -> Identity:
        rk, secret = cmd.plan_registration_key(view, tenant, 3600, t0)
        view.apply(rk)
        key = seeded_key(label)
        redeem = cmd.plan_redeem(view, secret, key.public_key, f"fp-{label}", t0)
        view.apply(redeem)
        return Identity(tenant, redeem.agent_id, key)

    agent, other = register("corpus-a", "agent"), register("corpus-b", "other")
    revoked, rotated, disabled = register("corpus-a", "revoked"), register("corpus-a", "rotated"), \
        register("corpus-d", "disabled")
    view.apply(cmd.plan_revoke_agent(view, "corpus-a", revoked.agent_id, t0 + 1))
    view.apply(cmd.plan_rotate_agent(view, "corpus-a", rotated.agent_id, seeded_key("rotated-new").public_key,
                                     t0 + 2, grace_seconds=0))
    view.apply(cmd.plan_tenant_status(view, "corpus-d", "disabled", t0 + 3))
    world = World("corpus-a", agent, other, revoked, rotated, disabled, now, retention_days, tag=tag)
    return view, world
