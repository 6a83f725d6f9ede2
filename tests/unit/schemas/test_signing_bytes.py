"""signing_bytes (cached parts, fast paths) equals docs/signing.md written out the plain way."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.errors import InvalidEvent
from agenttrail.schemas import envelope
from agenttrail.schemas.envelope import Envelope, signing_bytes


def reference_signing_bytes(env: Envelope) -> bytes:
    """docs/signing.md section 2, one field after the other, no caches."""
    def s(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack(">I", len(raw)) + raw

    out = b"agenttrail/event/v1\n" + s(env.event_id) + s(env.tenant_id) + s(env.agent_id) + s(env.session_id)
    out += struct.pack(">q", env.seq) + struct.pack(">q", env.ts) + s(env.type)
    out += struct.pack(">I", len(env.payload_sha256)) + env.payload_sha256
    out += struct.pack(">I", len(env.attributes))
    for key in sorted(env.attributes, key=lambda k: k.encode("utf-8")):
        out += s(key) + s(env.attributes[key])
    return out + s(env.key_id)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # empty and non-ASCII included
few = st.sampled_from(["", "a", "é", "s-00001", "agent/€", "ключ", "😀"])  # repeats, so the caches hit
maybe_few = few | text
attributes = st.dictionaries(maybe_few, maybe_few, max_size=6)


@st.composite
def raw_envelopes(draw: st.DrawFn) -> Envelope:
    """Any field values signing_bytes accepts, not only ones check_fields would pass."""
    return Envelope(
        event_id=draw(maybe_few | st.uuids().map(str)), tenant_id=draw(maybe_few), agent_id=draw(maybe_few),
        session_id=draw(maybe_few), seq=draw(st.integers(-(2**63), 2**63 - 1)),
        ts=draw(st.integers(-(2**63), 2**63 - 1)), type=draw(maybe_few), payload=b"",
        payload_sha256=draw(st.binary(min_size=32, max_size=32) | st.binary(max_size=40)),
        attributes=draw(attributes | st.dictionaries(text, text, min_size=2, max_size=20)),
        key_id=draw(maybe_few),
    )


@settings(max_examples=500)
@given(st.lists(raw_envelopes(), min_size=1, max_size=8))
def test_equals_the_reference(envs: list[Envelope]) -> None:
    for env in envs + envs:  # the second time round every part comes from the caches
        assert signing_bytes(env) == reference_signing_bytes(env)


@given(raw_envelopes(), st.sampled_from(["tenant_id", "agent_id", "session_id", "type", "key_id"]), text)
def test_a_cached_part_never_stands_in_for_another_value(env: Envelope, field: str, value: str) -> None:
    signing_bytes(env)
    other = dataclasses.replace(env, **{field: value})
    assert signing_bytes(other) == reference_signing_bytes(other)
    assert (signing_bytes(other) == signing_bytes(env)) == (value == getattr(env, field))


@given(raw_envelopes(), text, text)
def test_a_cached_single_attribute_never_stands_in_for_another(env: Envelope, key: str, value: str) -> None:
    one = dataclasses.replace(env, attributes={key: value})
    other = dataclasses.replace(env, attributes={key: value + "x"})
    assert signing_bytes(one) == reference_signing_bytes(one)
    assert signing_bytes(other) == reference_signing_bytes(other) != signing_bytes(one)


def test_full_caches_are_cleared_and_results_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "_PARTS_MAX", 3)
    envs = [Envelope(f"e{i}", "t", f"a{i % 5}", f"s{i % 7}", i, i, f"type{i % 4}", b"", bytes(32),
                     {"k": str(i % 6)} if i % 2 else {}, f"k{i % 3}") for i in range(200)]
    for env in envs:
        assert signing_bytes(env) == reference_signing_bytes(env)
    assert len(envelope._ids_parts) <= 3 and len(envelope._type_tail_parts) <= 3


@pytest.mark.parametrize("change", [
    {"tenant_id": "bad\udc80"}, {"agent_id": "bad\udc80"}, {"session_id": b"s"}, {"type": None},
    {"key_id": "bad\udc80"}, {"event_id": 7}, {"attributes": {"k": "bad\udc80"}}, {"attributes": {"k": 1}},
    {"attributes": {"k": ["unhashable"]}}, {"attributes": {"a": "1", "b": 2}}, {"seq": 2**63},
    {"ts": -(2**63) - 1}, {"seq": "1"}, {"payload_sha256": "not bytes"}, {"payload_sha256": None},
])
def test_bad_fields_raise_bad_field_and_are_not_cached(change: dict[str, object]) -> None:
    good = Envelope("e", "t", "a", "s", 0, 0, "message", b"", bytes(32), {"k": "v"}, "key")
    bad = dataclasses.replace(good, **change)
    for _ in range(2):
        with pytest.raises(InvalidEvent) as err:
            signing_bytes(bad)
        assert err.value.reason == "bad_field"
    assert signing_bytes(good) == reference_signing_bytes(good)
