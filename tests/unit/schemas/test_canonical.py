"""Canonical JSON against RFC 8785's own examples, the rfc8785 package, and UUIDv7 layout."""

from __future__ import annotations

import struct
import uuid

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.errors import InvalidEvent
from agenttrail.schemas.canonical import canonical_json, es6_number, is_canonical, uuid7, uuid7_unix_ms

# RFC 8785 appendix B: IEEE-754 bit patterns and their JSON number text.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_rfc8785_number_serialisation(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == text.encode()
    assert canonical_json([value]) == f"[{text}]".encode()


@pytest.mark.parametrize("bits", ["7ff8000000000000", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(InvalidEvent) as err:
        canonical_json({"x": value})
    assert err.value.reason == "bad_field"


def test_rfc8785_main_example() -> None:
    # RFC 8785 section 3.2.2 input, as Python values
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(value) == expected.encode("utf-8")


def test_rfc8785_sorting_example() -> None:
    # RFC 8785 section 3.2.3: keys sorted by UTF-16 code units (the emoji's surrogates sort before U+FB33)
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
             "\u00f6": "Latin Small Letter O With Diaeresis"}
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    out = canonical_json(value).decode("utf-8")
    positions = [out.index(rfc8785.dumps(k).decode("utf-8") + ":") for k in order]
    assert positions == sorted(positions)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_fast_path_matches_rfc8785_package(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # e.g. lone surrogates
        with pytest.raises(InvalidEvent):
            canonical_json(value)
        return
    assert canonical_json(value) == expected
    assert is_canonical(expected)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_es6_number_round_trips(x: float) -> None:
    assert float(es6_number(x)) == x


@pytest.mark.parametrize("bad", [{"s": {1, 2}}, {"b": b"raw"}, {1: "int key"}, {"big": 2**60}, object(),
                                 {"lone": "\ud800"}])
def test_unserialisable_payloads_raise_bad_field(bad: object) -> None:
    with pytest.raises(InvalidEvent) as err:
        canonical_json(bad)
    assert err.value.reason == "bad_field"


def test_is_canonical_rejects_other_forms() -> None:
    assert is_canonical(b'{"a":1,"b":[true]}')
    assert not is_canonical(b'{"b":1,"a":2}')
    assert not is_canonical(b'{"a": 1}')
    assert not is_canonical(b'{"a":1.0}')
    assert not is_canonical(b"not json")


def test_uuid7_layout() -> None:
    eid = uuid7(unix_ms=0x0190F3A25C1E, rand=bytes(range(10)))
    value = uuid.UUID(eid)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid7_unix_ms(eid) == 0x0190F3A25C1E
    assert eid.startswith("0190f3a2-5c1e-7")


def test_uuid7_is_unique_and_time_ordered() -> None:
    ids = [uuid7(unix_ms=1_000 + i // 10) for i in range(1000)]
    assert len(set(ids)) == 1000
    assert [uuid7_unix_ms(i) for i in ids] == sorted(uuid7_unix_ms(i) for i in ids)
    assert [uuid7_unix_ms(i) for i in sorted(ids)] == sorted(uuid7_unix_ms(i) for i in ids)
    with pytest.raises(ValueError):
        uuid7_unix_ms(str(uuid.uuid4()))
