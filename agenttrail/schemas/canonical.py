"""Canonical JSON (RFC 8785, via the ``rfc8785`` package) and UUIDv7 event ids."""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import rfc8785

from agenttrail.errors import InvalidEvent

_MAX_SAFE_INT = 2**53 - 1


class _Unusual(Exception):
    """A value the fast path does not handle; the rfc8785 package decides (or explains)."""


def es6_number(x: float) -> str:
    """ECMAScript Number.prototype.toString of a finite float (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(x):
        raise _Unusual
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) <= _MAX_SAFE_INT:
        return str(int(x))
    text = repr(x)  # shortest digits that round-trip, like ES6
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exp = text.lstrip("-").partition("e")
    int_part, _, frac = mantissa.partition(".")
    all_digits = int_part + frac
    stripped = all_digits.lstrip("0")
    n = len(int_part) + int(exp or 0) - (len(all_digits) - len(stripped))  # decimal point position
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + out


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def _encode(obj: Any, out: list[str]) -> None:
    kind = type(obj)
    if kind is str:
        out.append(encode_basestring(obj))
    elif kind is dict:
        out.append("{")
        try:
            keys = sorted(obj, key=_utf16)  # RFC 8785: sort by UTF-16 code units
        except (TypeError, AttributeError, UnicodeEncodeError):
            raise _Unusual from None
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(encode_basestring(key))
            out.append(":")
            _encode(obj[key], out)
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif kind is int:
        if not -_MAX_SAFE_INT <= obj <= _MAX_SAFE_INT:
            raise _Unusual
        out.append(str(obj))
    elif kind is float:
        out.append(es6_number(obj))
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif obj is None:
        out.append("null")
    else:
        raise _Unusual


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 (JCS) serialisation of ``obj``: sorted keys, no whitespace, ES6 numbers, UTF-8.

    Anything JSON cannot carry exactly (sets, bytes, NaN, non-string keys, integers beyond 2**53)
    raises ``InvalidEvent("bad_field")`` naming the problem. Plain dict/list/str/int/float/bool/None
    trees take a fast path (checked against the ``rfc8785`` package by property tests); anything
    else is handed to ``rfc8785`` itself.
    """
    out: list[str] = []
    try:
        _encode(obj, out)
        return "".join(out).encode("utf-8")
    except (_Unusual, UnicodeEncodeError, RecursionError):
        pass
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InvalidEvent("bad_field", f"payload is not canonical-JSON serialisable: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEvent("bad_field", f"payload is not JSON serialisable: {exc}") from None


def _parse_int(text: str) -> int | float:
    value = int(text)
    return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else float(text)  # JSON numbers are doubles


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is JSON already in RFC 8785 form (what a verifier checks on a payload)."""

    try:
        return canonical_json(json.loads(data, parse_int=_parse_int)) == data
    except (ValueError, InvalidEvent, UnicodeDecodeError):
        return False


def uuid7(unix_ms: int | None = None, rand: bytes | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant 10, 74 random bits.

    ``unix_ms`` and ``rand`` (10 bytes) exist for tests and vectors; by default the clock and
    ``os.urandom`` are used. Ids from one process sort by time at millisecond resolution.
    """
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"UUIDv7 timestamp out of range: {ms}")
    r = int.from_bytes(os.urandom(10) if rand is None else rand, "big")  # 80 bits, 74 used
    rand_a = (r >> 68) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def uuid7_unix_ms(event_id: str) -> int:
    """The millisecond timestamp inside a UUIDv7 (ValueError for anything that is not one)."""
    value = uuid.UUID(event_id)
    if value.version != 7:
        raise ValueError(f"not a UUIDv7: {event_id}")
    return value.int >> 80


class _Slow(Exception):
    """The payload needs the full RFC 8785 check (floats, unsafe integers, non-BMP characters)."""


def _float_needs_slow(text: str) -> float:
    raise _Slow


def _float_or_slow(text: str) -> float:
    """A float token the C encoder writes back unchanged exactly when it is in ES6 form.

    Python's repr and ECMAScript's Number::toString share the shortest round-trip digits and both
    write a non-integral number between 1e-4 and 1e16 in plain positional notation; so a token with
    no exponent, not ending in ".0" (ES6 writes integral values as integers), that equals the
    repr of its value is canonical, and json.dumps reproduces it. Everything else (exponents,
    "1.0", "-0.0", long forms) goes to the full check."""
    value = float(text)
    if "e" in text or text.endswith(".0") or repr(value) != text:
        raise _Slow
    return value


def _int_or_slow(text: str) -> int:
    value = int(text)
    if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return value
    raise _Slow


_NON_BMP_LEAD = re.compile(rb"[\xf0-\xff]")  # a 4-byte UTF-8 sequence (or an invalid byte)


def _not_json(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


# Built once: json.loads/json.dumps with custom arguments build a decoder and an encoder per call,
# which is half the cost of checking a small payload. No circular-reference markers are needed:
# parsed JSON has no cycles.
_scan = json.JSONDecoder(parse_float=_float_or_slow, parse_int=_int_or_slow,
                         parse_constant=_float_needs_slow).scan_once
_encode_sorted = c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, True) \
    if c_make_encoder is not None else None


def is_canonical_fast(data: bytes) -> bool:
    """``is_canonical`` with CPython's C JSON codec on the common payload.

    Without exponent-form floats, integers beyond 2**53 and characters outside the BMP, RFC 8785's
    output is exactly ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
    the same string escapes (ECMAScript's), integers as written, and code-point key order equal to
    UTF-16 order. Anything else takes the full check; a property test holds both to the same answers."""
    if _encode_sorted is None or _NON_BMP_LEAD.search(data):
        return is_canonical(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return is_canonical(data)
    try:
        obj, end = _scan(text, 0)
    except _Slow:
        return is_canonical(data)
    except (StopIteration, ValueError, RecursionError):
        return False
    if end != len(text):
        return False
    try:
        return "".join(_encode_sorted(obj, 0)) == text
    except (ValueError, TypeError, RecursionError):
        return is_canonical(data)
