"""The verifier's fast canonical check answers exactly like the full RFC 8785 check."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.schemas.canonical import canonical_json, is_canonical, is_canonical_fast

scalars = (st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4), max_leaves=20)


def renderings(obj: object) -> list[bytes]:
    out = [json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
           json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
           json.dumps(obj, sort_keys=True).encode(),
           json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()]
    with contextlib.suppress(Exception):
        out.append(canonical_json(obj))
    return out


@settings(max_examples=400, deadline=None)
@given(values)
def test_fast_and_full_checks_agree(obj: object) -> None:
    for data in renderings(obj):
        assert is_canonical_fast(data) == is_canonical(data), data


def test_known_cases() -> None:
    assert is_canonical_fast(b'{"a":1,"b":[true,null,"x"]}')
    assert not is_canonical_fast(b'{"b":1,"a":2}')  # key order
    assert not is_canonical_fast(b'{"a": 1}')  # whitespace
    assert not is_canonical_fast(b"1.0") and is_canonical_fast(b"1")  # ES6 numbers: 1.0 is "1"
    assert not is_canonical_fast(b"-0") and is_canonical_fast(b"0")
    assert is_canonical_fast(b'"\\u001f"') and not is_canonical_fast(b'"\\u001F"')
    assert not is_canonical_fast(b"not json") and not is_canonical_fast(b'{"a":1}x')
    mixed = '{"\U0001f600":1,"\ue000":2}'.encode()
    assert is_canonical_fast(mixed) == is_canonical(mixed)


@settings(max_examples=600, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(-3, 3))
def test_float_tokens_agree(x: float, shift: int) -> None:
    """Every spelling of a float (repr, ES6 form, fixed notation, exponent) gets the same answer."""
    x = x * 10.0**shift if abs(x) < 1e300 else x
    spellings = {repr(x), f"{x:.17g}", f"{x:f}", f"{x:e}", json.dumps(x)}
    with contextlib.suppress(Exception):
        spellings.add(canonical_json(x).decode())
    for text in spellings:
        for data in (text.encode(), f'{{"v":{text}}}'.encode(), f"[{text},1]".encode()):
            assert is_canonical_fast(data) == is_canonical(data), data


def test_plain_floats_take_the_fast_path() -> None:
    from agenttrail.schemas import canonical

    assert canonical._float_or_slow("0.0032") == 0.0032
    for token in ("640.0", "1e-7", "1e+21", "0.00001", "-0.0", "1.50"):
        with contextlib.suppress(canonical._Slow):
            canonical._float_or_slow(token)
            raise AssertionError(f"{token} must take the full check")
    assert is_canonical_fast(b'{"cost_usd":0.0032,"latency_ms":640}')
    assert not is_canonical_fast(b'{"cost_usd":0.0032,"latency_ms":640.0}')
