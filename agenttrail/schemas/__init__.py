"""Avro contracts (single-object encoding), canonical JSON and the envelope's signing bytes."""

from __future__ import annotations

from agenttrail.schemas.canonical import canonical_json, uuid7
from agenttrail.schemas.envelope import (
    EVENT_TYPES,
    Envelope,
    build_envelope,
    decode_envelope,
    encode_envelope,
    signing_bytes,
    verify_signature,
)
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger, encode_ledger

__all__ = [
    "EVENT_TYPES",
    "Envelope",
    "LedgerRecord",
    "build_envelope",
    "canonical_json",
    "decode_envelope",
    "decode_ledger",
    "encode_envelope",
    "encode_ledger",
    "signing_bytes",
    "uuid7",
    "verify_signature",
]
