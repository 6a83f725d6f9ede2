"""Envelope: Avro round-trips, fingerprints, signing bytes, and tamper detection (hypothesis)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.crypto import SigningKey, sha256
from agenttrail.errors import InvalidEvent
from agenttrail.schemas.codec import MAGIC, build_schema, read_avsc
from agenttrail.schemas.envelope import (
    EVENT_TYPES,
    Envelope,
    build_envelope,
    check_fields,
    decode_envelope,
    encode_envelope,
    signing_bytes,
    verify_envelope,
    verify_signature,
)
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger, encode_ledger
from agenttrail.schemas.registry import ENVELOPE_V1, KNOWN, LEDGER_V1, PINNED

KEY = SigningKey.from_seed(b"\x07" * 32)
OTHER = SigningKey.from_seed(b"\x08" * 32)

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
tenants = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
payloads = st.dictionaries(st.text(max_size=8), st.integers(-1000, 1000) | st.text(max_size=30)
                           | st.booleans() | st.none(), max_size=6)
attributes = st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
                             st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), max_size=4)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    return build_envelope(
        key=KEY, tenant_id=draw(tenants), agent_id=draw(ids), session_id=draw(ids),
        seq=draw(st.integers(0, 2**63 - 1)), ts=draw(st.integers(0, 2**48 * 1000 - 1)),
        type=draw(st.sampled_from(EVENT_TYPES)),
        payload=draw(payloads), attributes=draw(attributes),
    )


@given(envelopes())
def test_encode_decode_round_trip(env: Envelope) -> None:
    data = encode_envelope(env)
    assert data[:2] == MAGIC and data[2:10] == ENVELOPE_V1.fingerprint
    back = decode_envelope(data)
    assert back == env
    assert type(back.ts) is int and type(back.seq) is int
    assert verify_envelope(back, KEY.public_key)


def _mutations(env: Envelope) -> list[Envelope]:
    """One envelope per field, with only that field changed."""
    swap = {"event_id": env.event_id + "x", "tenant_id": env.tenant_id + "x", "agent_id": env.agent_id + "x",
            "session_id": env.session_id + "x", "seq": env.seq ^ 1, "ts": env.ts ^ 1,
            "type": next(t for t in EVENT_TYPES if t != env.type),
            "payload_sha256": bytes([env.payload_sha256[0] ^ 1]) + env.payload_sha256[1:],
            "attributes": {**env.attributes, "extra": "1"}, "key_id": env.key_id + "x",
            "signature": bytes([env.signature[0] ^ 1]) + env.signature[1:]}
    out = [dataclasses.replace(env, **{name: value}) for name, value in swap.items()]
    if env.attributes:
        key = next(iter(env.attributes))
        out.append(dataclasses.replace(env, attributes={**env.attributes, key: env.attributes[key] + "x"}))
    return out


@given(envelopes())
@settings(max_examples=60)
def test_changing_any_field_breaks_verification(env: Envelope) -> None:
    assert verify_envelope(env, KEY.public_key)
    for bad in _mutations(env):
        assert not verify_envelope(bad, KEY.public_key)
    assert not verify_envelope(env, OTHER.public_key)


@given(envelopes(), st.data())
def test_changing_any_payload_byte_breaks_verification(env: Envelope, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(env.payload) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(env.payload)
    tampered[i] ^= flip
    assert not verify_envelope(dataclasses.replace(env, payload=bytes(tampered)), KEY.public_key)


def test_erased_payload_still_verifies() -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=0, type="message",
                         payload={"role": "user", "text": "my address is ..."})
    erased = dataclasses.replace(env, payload=b"")
    assert signing_bytes(erased) == signing_bytes(env)
    assert verify_envelope(erased, KEY.public_key)
    assert decode_envelope(encode_envelope(erased)) == erased


def test_signing_bytes_are_unambiguous_and_attribute_order_free() -> None:
    base = build_envelope(key=KEY, tenant_id="acme", agent_id="ab", session_id="c", seq=1, type="custom",
                          payload={}, attributes={"a": "1", "b": "2"}, ts=5)
    moved = dataclasses.replace(base, agent_id="a", session_id="bc")
    assert signing_bytes(moved) != signing_bytes(base)
    reordered = dataclasses.replace(base, attributes={"b": "2", "a": "1"})
    assert signing_bytes(reordered) == signing_bytes(base)
    joined = dataclasses.replace(base, attributes={"a": "1b", "": "2"})
    assert signing_bytes(joined) != signing_bytes(base)
    assert signing_bytes(base).startswith(b"agenttrail/event/v1\n")
    assert sha256(base.payload) == base.payload_sha256


def test_decode_rejects_unknown_schema_and_garbage() -> None:
    data = encode_envelope(build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=0,
                                          type="custom", payload={"k": 1}))
    other_fp = data[:2] + bytes(8) + data[10:]
    cases: dict[bytes, str] = {
        other_fp: "unknown_schema",
        b"": "malformed", b"\xc3": "malformed", b"{json}": "malformed", data[1:]: "malformed",
        data[:-3]: "malformed", data + b"\x00": "malformed", data[:10]: "malformed",
    }
    for raw, reason in cases.items():
        with pytest.raises(InvalidEvent) as err:
            decode_envelope(raw)
        assert err.value.reason == reason, raw


@given(st.binary(max_size=300))
def test_decoding_random_bodies_only_raises_invalid_event(body: bytes) -> None:
    try:
        decode_envelope(MAGIC + ENVELOPE_V1.fingerprint + body)
    except InvalidEvent as exc:
        assert exc.reason == "malformed"


def test_fingerprints_are_pinned() -> None:
    for schema in (ENVELOPE_V1, LEDGER_V1):
        version = 1
        assert PINNED[(schema.name, version)] == schema.fingerprint_hex, (
            f"{schema.name} changed: ship it as a new version instead of editing v{version}")
    assert set(KNOWN) == {ENVELOPE_V1.fingerprint, LEDGER_V1.fingerprint}
    # logicalType is not part of the canonical form, so the reader schema keeps the same fingerprint
    assert build_schema(read_avsc("envelope.avsc")).fingerprint == ENVELOPE_V1.fingerprint


def test_ledger_round_trip_and_not_an_envelope() -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=3, type="llm_call",
                         payload={"model": "gpt-4o"})
    rec = LedgerRecord(env, chain_index=7, prev_hash=bytes(32), entry_hash=b"\x01" * 32, seq_gap=True,
                       source_partition=2, source_offset=12345)
    data = encode_ledger(rec)
    assert decode_ledger(data) == rec
    with pytest.raises(InvalidEvent) as err:
        decode_envelope(data)
    assert err.value.reason == "unknown_schema"


@pytest.mark.parametrize(("change", "needle"), [
    ({"tenant_id": "Bad Tenant"}, "tenant_id"), ({"agent_id": ""}, "agent_id"), ({"type": "nope"}, "type"),
    ({"seq": -1}, "seq"), ({"payload_sha256": b"short"}, "payload_sha256"), ({"signature": b"x"}, "signature"),
])
def test_check_fields(change: dict[str, Any], needle: str) -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=0, type="custom",
                         payload={})
    check_fields(env)
    with pytest.raises(InvalidEvent) as err:
        check_fields(dataclasses.replace(env, **change))
    assert err.value.reason == "bad_field" and needle in str(err.value)


def test_verify_never_raises_on_odd_values() -> None:
    env = build_envelope(key=KEY, tenant_id="acme", agent_id="a", session_id="s", seq=0, type="custom",
                         payload={})
    assert not verify_signature(dataclasses.replace(env, seq=2**64), KEY.public_key)
    assert not verify_signature(env, b"short")
    assert not verify_signature(dataclasses.replace(env, signature=b""), KEY.public_key)
