"""Canonical JSON (RFC 8785, via the ``rfc8785`` package) and UUIDv7 event ids."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import rfc8785

from agenttrail.errors import InvalidEvent


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 (JCS) serialisation of ``obj``: sorted keys, no whitespace, ES6 numbers, UTF-8.

    Anything JSON cannot carry exactly (sets, bytes, NaN, non-string keys, integers beyond 2**53)
    raises ``InvalidEvent("bad_field")`` naming the problem.
    """
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InvalidEvent("bad_field", f"payload is not canonical-JSON serialisable: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEvent("bad_field", f"payload is not JSON serialisable: {exc}") from None


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is JSON already in RFC 8785 form (what a verifier checks on a payload)."""
    import json

    try:
        return canonical_json(json.loads(data)) == data
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
