"""The verifier's fast path: one pass over a v1 envelope gives the Envelope *and* its signing bytes.

Avro strings are length-prefixed UTF-8, so the signing bytes (docs/signing.md) can be assembled
from slices of the message itself instead of decoding every field and encoding it again. Only the
plain, well-formed case is handled here: single-byte-or-short varints, one attribute block, no
duplicate keys, no trailing bytes. Anything else returns ``None`` and the caller takes the generic
decoder (fastavro), which also names the exact error. A property test holds this path to
``decode_envelope`` + ``signing_bytes`` on valid envelopes and on mutated bytes.
"""

from __future__ import annotations

from agenttrail.native import fastpath
from agenttrail.schemas.codec import HEADER_LEN
from agenttrail.schemas.envelope import (
    EVENT_TYPES,
    SIGNING_DOMAIN,
    Envelope,
    _seq_ts,
    _u32,
    attributes_part,
    decode_envelope,
)
from agenttrail.schemas.registry import ENVELOPE_V1

_HEADER = ENVELOPE_V1.header
# The same function in C (agenttrail/native/_fastpath.c, set up by envelope.py); this file stays the reference.
_native_decode = fastpath.decode_v1 if fastpath is not None else None
_TYPE_PARTS = tuple(_u32(len(t)) + t.encode() for t in EVENT_TYPES)
_NO_ATTRIBUTES = _u32(0)
_MAX_VARINT_BYTES = 10  # a 64-bit zigzag value; anything longer or larger goes to the generic decoder


class _Unusual(Exception):
    """Not the plain case: let the generic decoder handle (or reject) the message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Unsigned base-128 varint at ``pos`` (before zigzag): (value, next position)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    value, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = data[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >> 64:
                raise _Unusual
            return value, pos + 1
        shift += 7
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise _Unusual


def _long(data: bytes, pos: int) -> tuple[int, int]:
    raw, pos = _varint(data, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def _blob(data: bytes, pos: int) -> tuple[bytes, int]:
    """An Avro bytes/string body: (raw bytes, next position)."""
    n = data[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = _varint(data, pos)
    if n & 1:
        raise _Unusual  # a negative length
    end = pos + (n >> 1)
    if end > len(data):
        raise _Unusual  # truncated
    return data[pos:end], end


def _decode_v1(data: bytes) -> tuple[Envelope, bytes]:
    pos = HEADER_LEN
    ev, pos = _blob(data, pos)
    te, pos = _blob(data, pos)
    ag, pos = _blob(data, pos)
    se, pos = _blob(data, pos)
    seq, pos = _long(data, pos)
    ts, pos = _long(data, pos)
    kind = data[pos]
    if kind >= 0x80 or kind & 1 or (kind >> 1) >= len(EVENT_TYPES):
        raise _Unusual
    kind >>= 1
    pos += 1
    payload, pos = _blob(data, pos)
    digest, pos = _blob(data, pos)
    count, pos = _long(data, pos)
    attributes: dict[str, str] = {}
    attr_part = _NO_ATTRIBUTES
    if count:
        if count < 0:
            raise _Unusual  # a block with its byte size: rare, the generic decoder reads it
        pairs: list[tuple[bytes, bytes]] = []
        for _ in range(count):
            k, pos = _blob(data, pos)
            v, pos = _blob(data, pos)
            attributes[k.decode("utf-8")] = v.decode("utf-8")
            pairs.append((k, v))
        if data[pos] != 0 or len(attributes) != count:
            raise _Unusual  # a second block, or a key given twice
        pos += 1
        attr_part = attributes_part(pairs)
    kid, pos = _blob(data, pos)
    signature, pos = _blob(data, pos)
    if pos != len(data):
        raise _Unusual  # trailing bytes
    env = Envelope(ev.decode("utf-8"), te.decode("utf-8"), ag.decode("utf-8"), se.decode("utf-8"), seq, ts,
                   EVENT_TYPES[kind], payload, digest, attributes, kid.decode("utf-8"), signature)
    message = b"".join((
        SIGNING_DOMAIN, _u32(len(ev)), ev, _u32(len(te)), te, _u32(len(ag)), ag, _u32(len(se)), se,
        _seq_ts(seq, ts), _TYPE_PARTS[kind], _u32(len(digest)), digest, attr_part, _u32(len(kid)), kid,
    ))
    return env, message


def decode_signed(data: bytes) -> tuple[Envelope, bytes | None]:
    """(envelope, its signing bytes) — the signing bytes are None when the generic decoder was
    needed (compute them with ``signing_bytes`` after the field checks). Raises what
    ``decode_envelope`` raises for a message it refuses."""
    if type(data) is bytes and data[:HEADER_LEN] == _HEADER:
        if _native_decode is not None:
            found = _native_decode(data)
            if found is not None:
                return found  # type: ignore[no-any-return]
        else:
            try:
                return _decode_v1(data)
            except (_Unusual, IndexError, UnicodeDecodeError):
                pass
    return decode_envelope(data), None
