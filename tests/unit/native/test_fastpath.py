"""The C fast path (agenttrail/native/_fastpath.c) against its pure-Python references.

decode_v1 must give exactly what envelope_fast._decode_v1 gives (None where that one gives up),
canonical_plain may say True only where is_canonical_fast does, ledger_v1 must give the bytes of
the Python encoder — on valid input and on mutated or random input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.native import fastpath
from agenttrail.schemas import envelope_fast, ledger
from agenttrail.schemas.canonical import canonical_json, is_canonical_fast
from agenttrail.schemas.envelope import Envelope, encode_envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.schemas.registry import ENVELOPE_V1, LEDGER_V1
from tests.unit.schemas.test_canonical_fast import renderings, values
from tests.unit.schemas.test_envelope import envelopes

pytestmark = pytest.mark.skipif(fastpath is None, reason="the C fast path is not built (or AGENTTRAIL_NATIVE=0)")


def _python_decode(data: bytes) -> tuple[Envelope, bytes] | None:
    try:
        return envelope_fast._decode_v1(data)
    except (envelope_fast._Unusual, IndexError, UnicodeDecodeError):
        return None


def _mutate(raw: bytes, draw: st.DataObject) -> bytes:
    data = bytearray(raw)
    kind = draw.draw(st.sampled_from(["flip", "truncate", "insert", "append", "splice"]))
    i = draw.draw(st.integers(10, len(data) - 1))
    if kind == "flip":
        data[i] ^= draw.draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[i:]
    elif kind == "insert":
        data.insert(i, draw.draw(st.integers(0, 255)))
    elif kind == "append":
        data += draw.draw(st.binary(min_size=1, max_size=4))
    else:
        data[i:i] = draw.draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(envelopes())
def test_decode_matches_python_on_valid_envelopes(env: Envelope) -> None:
    data = encode_envelope(env)
    found = fastpath.decode_v1(data)
    assert found == _python_decode(data) == (env, signing_bytes(env))
    assert type(found[0]) is Envelope and type(found[1]) is bytes


@settings(max_examples=1500, deadline=None)
@given(envelopes(), st.data())
def test_decode_matches_python_on_mutated_bytes(env: Envelope, draw: st.DataObject) -> None:
    data = _mutate(encode_envelope(env), draw)
    assert fastpath.decode_v1(data) == _python_decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decode_matches_python_on_random_bytes_after_the_header(tail: bytes) -> None:
    data = ENVELOPE_V1.header + tail
    assert fastpath.decode_v1(data) == _python_decode(data)


def test_decode_refuses_what_is_not_a_v1_envelope() -> None:
    assert fastpath.decode_v1(b"") is None
    assert fastpath.decode_v1(LEDGER_V1.header + b"\x00" * 40) is None
    assert fastpath.decode_v1(bytearray(ENVELOPE_V1.header)) is None  # type: ignore[arg-type]


@given(envelopes())
@settings(max_examples=50, deadline=None)
def test_the_c_built_envelope_is_a_frozen_envelope(env: Envelope) -> None:
    built, _ = fastpath.decode_v1(encode_envelope(env))
    assert repr(built) == repr(env) and built == env
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seq = 1  # type: ignore[misc]
    assert dataclasses.replace(built, seq=built.seq + 1).seq == env.seq + 1
    assert dataclasses.asdict(built) == dataclasses.asdict(env)


def test_decode_leaks_nothing() -> None:
    from agenttrail.schemas.envelope import build_envelope
    from tests.unit.schemas.test_envelope import KEY

    env = build_envelope(key=KEY, tenant_id="t", agent_id="a", session_id="s", seq=1, type="message",
                         payload={"text": "x" * 200}, attributes={"k": "v", "b": "w"})
    good, bad = encode_envelope(env), encode_envelope(env)[:-3]
    for _ in range(2000):
        fastpath.decode_v1(good)
        fastpath.decode_v1(bad)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            fastpath.decode_v1(good)
            fastpath.decode_v1(bad)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes left behind by 40k calls"


# ---- canonical_plain -------------------------------------------------------------------------

@settings(max_examples=600, deadline=None)
@given(values, st.data())
def test_canonical_plain_says_true_only_where_python_does(obj: object, draw: st.DataObject) -> None:
    for data in renderings(obj):
        if fastpath.canonical_plain(data):
            assert is_canonical_fast(data), data
        if data:
            mutated = _mutate(b"\x00" * 10 + data, draw)[10:] if len(data) > 1 else data
            if fastpath.canonical_plain(mutated):
                assert is_canonical_fast(mutated), mutated


plain_floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: "e" not in repr(x) and abs(x) < 2**53)
plain_scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | plain_floats
                 | st.text(st.characters(max_codepoint=0xFFFF, blacklist_categories=("Cs",)), max_size=12))
plain_values = st.recursive(plain_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFFFF, blacklist_categories=("Cs",)),
            max_size=6).filter(lambda k: '"' not in k and "\\" not in k), inner, max_size=4), max_leaves=20)


@settings(max_examples=600, deadline=None)
@given(plain_values)
def test_canonical_plain_shows_the_common_payloads(obj: object) -> None:
    """Without exponent floats, unsafe integers, non-BMP text or escaped keys, C decides alone."""
    data = canonical_json(obj)
    assert fastpath.canonical_plain(data) and is_canonical_fast(data), data


def test_canonical_plain_known_cases() -> None:
    yes = [b'{"a":1,"b":[true,null,"x"]}', b"0", b"-5", b"9007199254740991", b"0.0032", b"-1.5", b"[]", b"{}",
           b'"\\u001f\\n\\"\\\\"', '{"é":"ü","ÿ":"€"}'.encode(), b'{"cost_usd":0.0032,"latency_ms":640}']
    no = [b'{"b":1,"a":2}', b'{"a":1,"a":1}', b'{"a": 1}', b" 1", b"1.0", b"-0", b"-0.0", b"1.50", b"1e5",
          b"9007199254740992", b'"\\u001F"', b'"\\u0041"', b'"\\/"', b'"\\u000a"', b'{"\\n":1}', b"01",
          b"1.", b"-", b"", b"tru", b"nul", b"[1,]", b'{"a":1,}', b'"\x01"', b"\xf0\x9f\x98\x80",
          '"\U0001f600"'.encode(), b'"\xed\xa0\x80"', b'"\xc0\xaf"', b"[" * 100 + b"]" * 100, b"1}", b"NaN"]
    for data in yes:
        assert fastpath.canonical_plain(data), data
        assert is_canonical_fast(data), data
    for data in no:
        assert not fastpath.canonical_plain(data), data
    assert not fastpath.canonical_plain(bytearray(b"1"))  # type: ignore[arg-type]
    assert json.loads(b'{"a":1,"a":1}') == {"a": 1}  # why duplicates must never be shown canonical here


# ---- ledger_v1 -------------------------------------------------------------------------------

def _python_ledger(raw: bytes, rec: LedgerRecord) -> bytes:
    saved, ledger._native_ledger = ledger._native_ledger, None
    try:
        return ledger.encode_ledger_from_raw(raw, rec)
    finally:
        ledger._native_ledger = saved


@settings(max_examples=300, deadline=None)
@given(envelopes(), st.integers(0, 2**62 - 1), st.binary(max_size=40), st.binary(max_size=40), st.booleans(),
       st.integers(0, 2**31 - 1), st.integers(0, 2**62 - 1))
def test_ledger_matches_python(env: Envelope, index: int, prev: bytes, entry: bytes, gap: bool, partition: int,
                               offset: int) -> None:
    raw = encode_envelope(env)
    rec = LedgerRecord(env, index, prev, entry, gap, partition, offset)
    assert fastpath.ledger_v1(LEDGER_V1.header, raw, index, prev, entry, gap, partition, offset) \
        == _python_ledger(raw, rec) == ledger.encode_ledger_from_raw(raw, rec)


def test_ledger_leaves_out_of_range_integers_to_python() -> None:
    raw = ENVELOPE_V1.header + b"\x00"
    for index, offset in ((-1, 0), (2**62, 0), (0, 2**63), (0, -5)):
        assert fastpath.ledger_v1(LEDGER_V1.header, raw, index, b"", b"", False, 0, offset) is None


# ---- the switch --------------------------------------------------------------------------------

def test_agenttrail_native_0_runs_the_python_reference() -> None:
    code = ("from agenttrail import native; from agenttrail.schemas import envelope_fast, ledger; "
            "print(native.status(), envelope_fast._native_decode, ledger._native_ledger)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "AGENTTRAIL_NATIVE": "0"}).stdout.strip()
    assert out == "off (AGENTTRAIL_NATIVE=0) None None"


# ---- decode_ledger_v1 ----------------------------------------------------------------------------

def _fastavro_ledger(data: bytes) -> LedgerRecord | None:
    from agenttrail.errors import InvalidEvent
    from agenttrail.schemas.codec import decode
    from agenttrail.schemas.registry import LEDGER_SCHEMAS

    try:
        return LedgerRecord.from_record(decode(data, LEDGER_SCHEMAS)[1])
    except (InvalidEvent, KeyError, TypeError, ValueError):
        return None


ledger_fields = (st.integers(0, 2**63 - 1), st.binary(max_size=40), st.binary(max_size=40), st.booleans(),
                 st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))


@settings(max_examples=300, deadline=None)
@given(envelopes(), *ledger_fields)
def test_ledger_decode_matches_fastavro(env: Envelope, index: int, prev: bytes, entry: bytes, gap: bool,
                                        partition: int, offset: int) -> None:
    rec = LedgerRecord(env, index, prev, entry, gap, partition, offset)
    data = ledger.encode_ledger(rec)
    found = fastpath.decode_ledger_v1(data, LEDGER_V1.header)
    assert found is not None and LedgerRecord(*found) == rec == ledger.decode_ledger(data)
    assert type(found[4]) is bool


@settings(max_examples=1500, deadline=None)
@given(envelopes(), *ledger_fields, st.data())
def test_ledger_decode_never_disagrees_on_mutated_bytes(env: Envelope, index: int, prev: bytes, entry: bytes,
                                                        gap: bool, partition: int, offset: int,
                                                        draw: st.DataObject) -> None:
    data = _mutate(ledger.encode_ledger(LedgerRecord(env, index, prev, entry, gap, partition, offset)), draw)
    found = fastpath.decode_ledger_v1(data, LEDGER_V1.header)
    if found is not None:  # where C reads a record, fastavro reads the same one
        assert LedgerRecord(*found) == _fastavro_ledger(data)


def test_ledger_decode_leaves_the_unusual_to_fastavro() -> None:
    from agenttrail.schemas.envelope import build_envelope
    from tests.unit.schemas.test_envelope import KEY

    env = build_envelope(key=KEY, tenant_id="t", agent_id="a", session_id="s", seq=1, type="message",
                         payload={"text": "x"})
    data = ledger.encode_ledger(LedgerRecord(env, 3, b"p" * 32, b"e" * 32, True, 2, 9))
    assert fastpath.decode_ledger_v1(data, LEDGER_V1.header) is not None
    assert fastpath.decode_ledger_v1(data + b"\x00", LEDGER_V1.header) is None  # trailing bytes
    gap_at = len(data) - 3  # seq_gap, partition (1 byte), offset (1 byte)
    assert data[gap_at] == 1
    assert fastpath.decode_ledger_v1(data[:gap_at] + b"\x02" + data[gap_at + 1:], LEDGER_V1.header) is None
    assert fastpath.decode_ledger_v1(ENVELOPE_V1.header + data[10:], LEDGER_V1.header) is None
    assert fastpath.decode_ledger_v1(data, ENVELOPE_V1.header) is None
