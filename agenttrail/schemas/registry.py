"""The table of schema versions this build can read, keyed by single-object fingerprint.

A schema file in this package is parsed once, here. Changing a shipped ``.avsc`` changes its
fingerprint; ``PINNED`` records the fingerprint of every released version so a test catches an
accidental change (a new version keeps the old file beside it and adds a row).
"""

from __future__ import annotations

from agenttrail.schemas.codec import AvroSchema, build_schema, read_avsc

_ENVELOPE_JSON = read_avsc("envelope.avsc")

ENVELOPE_V1: AvroSchema = build_schema(_ENVELOPE_JSON)
LEDGER_V1: AvroSchema = build_schema(read_avsc("ledger.avsc"), {"agenttrail.Envelope": _ENVELOPE_JSON})

# (schema name, version) -> CRC-64-AVRO fingerprint as it appears on the wire, hex.
PINNED: dict[tuple[str, int], str] = {
    ("agenttrail.Envelope", 1): "aa75c05e518d0631",
    ("agenttrail.LedgerRecord", 1): "94325be19bccb60d",
}

ENVELOPE_SCHEMAS: dict[bytes, AvroSchema] = {ENVELOPE_V1.fingerprint: ENVELOPE_V1}
LEDGER_SCHEMAS: dict[bytes, AvroSchema] = {LEDGER_V1.fingerprint: LEDGER_V1}
KNOWN: dict[bytes, AvroSchema] = {**ENVELOPE_SCHEMAS, **LEDGER_SCHEMAS}


def describe() -> list[dict[str, str]]:
    """Rows for people and scripts: name, fingerprint."""
    return [{"schema": s.name, "fingerprint": s.fingerprint_hex} for s in KNOWN.values()]
