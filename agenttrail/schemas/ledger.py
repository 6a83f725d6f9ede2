"""The ledger record: a verified envelope with its place in the per-session hash chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agenttrail.native import fastpath
from agenttrail.schemas.codec import HEADER_LEN, decode, encode
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.registry import ENVELOPE_V1, LEDGER_SCHEMAS, LEDGER_V1


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    envelope: Envelope
    chain_index: int
    prev_hash: bytes
    entry_hash: bytes
    seq_gap: bool
    source_partition: int
    source_offset: int

    def to_record(self) -> dict[str, Any]:
        return {
            "envelope": self.envelope.to_record(), "chain_index": self.chain_index,
            "prev_hash": self.prev_hash, "entry_hash": self.entry_hash, "seq_gap": self.seq_gap,
            "source_partition": self.source_partition, "source_offset": self.source_offset,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> LedgerRecord:
        return cls(Envelope.from_record(rec["envelope"]), rec["chain_index"], rec["prev_hash"],
                   rec["entry_hash"], rec["seq_gap"], rec["source_partition"], rec["source_offset"])


def encode_ledger(rec: LedgerRecord) -> bytes:
    return encode(LEDGER_V1, rec.to_record())


def _varint(n: int) -> bytes:
    """Avro `long`/`int`: zigzag, then base-128 little-endian groups."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_native_ledger = fastpath.ledger_v1 if fastpath is not None else None  # the same in C (agenttrail/native)


def encode_ledger_from_raw(raw_envelope: bytes, rec: LedgerRecord) -> bytes:
    """encode_ledger(rec), reusing the agent's own envelope bytes instead of re-encoding them.

    An Avro record is the concatenation of its fields, so a v1 ledger record is the ledger header,
    the v1 envelope body exactly as it arrived (the decoder already refused trailing bytes), then
    the chain fields. Byte-identical to encode_ledger (tested); any other envelope version falls
    back to it. The hot path saves a full envelope re-encode per event."""
    if raw_envelope[:HEADER_LEN] != ENVELOPE_V1.header:
        return encode_ledger(rec)
    if _native_ledger is not None:
        found = _native_ledger(LEDGER_V1.header, raw_envelope, rec.chain_index, rec.prev_hash, rec.entry_hash,
                               rec.seq_gap, rec.source_partition, rec.source_offset)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return b"".join((
        LEDGER_V1.header, raw_envelope[HEADER_LEN:], _varint(rec.chain_index),
        _varint(len(rec.prev_hash)), rec.prev_hash, _varint(len(rec.entry_hash)), rec.entry_hash,
        b"\x01" if rec.seq_gap else b"\x00", _varint(rec.source_partition), _varint(rec.source_offset),
    ))


_native_decode_ledger = fastpath.decode_ledger_v1 if fastpath is not None else None


def decode_ledger(data: bytes) -> LedgerRecord:
    """Decode one ledger record; unknown fingerprint -> unknown_schema, broken bytes -> malformed.

    A plain v1 record is read by the C fast path when it is built (the sinks decode every record);
    fastavro reads everything else and names the error of a broken one."""
    if _native_decode_ledger is not None:
        found = _native_decode_ledger(data, LEDGER_V1.header)
        if found is not None:
            return LedgerRecord(*found)
    _, record = decode(data, LEDGER_SCHEMAS)
    return LedgerRecord.from_record(record)
