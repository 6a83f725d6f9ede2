"""The verifier's one-pass decoder gives exactly what decode_envelope + signing_bytes give."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.errors import InvalidEvent
from agenttrail.schemas import envelope_fast
from agenttrail.schemas.envelope import Envelope, decode_envelope, encode_envelope, signing_bytes
from tests.unit.schemas.test_envelope import envelopes


def _agrees(data: bytes) -> bool:
    """If the fast path accepts ``data``, the generic path must accept it with the same result.
    Returns whether the fast path accepted it."""
    try:
        fast = envelope_fast._decode_v1(data)
    except (envelope_fast._Unusual, IndexError, UnicodeDecodeError):
        return False
    env = decode_envelope(data)
    assert fast == (env, signing_bytes(env))
    return True


@settings(max_examples=300, deadline=None)
@given(envelopes())
def test_valid_envelopes_take_the_fast_path_with_identical_results(env: Envelope) -> None:
    data = encode_envelope(env)
    assert _agrees(data)
    assert envelope_fast.decode_signed(data) == (env, signing_bytes(env))


@settings(max_examples=300, deadline=None)
@given(envelopes(), st.data())
def test_mutated_bytes_never_disagree(env: Envelope, data: st.DataObject) -> None:
    raw = bytearray(encode_envelope(env))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "append"]))
    i = data.draw(st.integers(10, len(raw) - 1))
    if kind == "flip":
        raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del raw[i:]
    elif kind == "insert":
        raw.insert(i, data.draw(st.integers(0, 255)))
    else:
        raw += b"\x00"
    mutated = bytes(raw)
    _agrees(mutated)
    try:
        expected = decode_envelope(mutated)
    except InvalidEvent as exc:
        with pytest.raises(InvalidEvent) as err:
            envelope_fast.decode_signed(mutated)
        assert err.value.reason == exc.reason
    else:
        env2, message = envelope_fast.decode_signed(mutated)
        assert env2 == expected
        assert message is None or message == signing_bytes(expected)


def test_long_fields_and_many_attributes() -> None:
    env = Envelope("e" * 36, "t0", "a" * 300, "s\u00e9" * 200, 2**62, 2**62 + 5, "lesson", b"{}" * 100,
                   bytes(32), {f"k{i}\u20ac": "v" * i for i in range(70)}, "ed25519:" + "0" * 16, bytes(64))
    data = encode_envelope(env)
    assert envelope_fast.decode_signed(data)[1] in (None, signing_bytes(env))
    assert envelope_fast.decode_signed(data)[0] == env


def test_unusual_inputs_fall_back_to_the_generic_decoder() -> None:
    env = dataclasses.replace(decode_envelope(encode_envelope(
        Envelope("e", "t", "a", "s", 1, 2, "message", b"{}", bytes(32), {}, "k", b""))), seq=2**63 - 1)
    data = encode_envelope(env)
    assert envelope_fast.decode_signed(data) == (env, signing_bytes(env))  # 10-byte varints are fine
    with_attr = dataclasses.replace(env, attributes={"a": "b"})
    plain = encode_envelope(with_attr)
    blocked = plain.replace(b"\x02\x02a\x02b\x00", b"\x01\x08\x02a\x02b\x00")  # a sized map block
    assert blocked != plain
    assert envelope_fast.decode_signed(blocked) == (with_attr, None)  # read by the generic decoder
    with pytest.raises(InvalidEvent) as err:
        envelope_fast.decode_signed(data[:-3])
    assert err.value.reason == "malformed"
    assert envelope_fast.decode_signed(bytearray(data))[1] is None  # not bytes: generic path
