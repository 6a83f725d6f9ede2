"""The ledger record: a verified envelope with its place in the per-session hash chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agenttrail.schemas.codec import decode, encode
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.registry import LEDGER_SCHEMAS, LEDGER_V1


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


def decode_ledger(data: bytes) -> LedgerRecord:
    """Decode one ledger record; unknown fingerprint -> unknown_schema, broken bytes -> malformed."""
    _, record = decode(data, LEDGER_SCHEMAS)
    return LedgerRecord.from_record(record)
