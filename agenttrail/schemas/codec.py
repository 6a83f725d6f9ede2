"""Avro single-object encoding (fastavro) over the schemas shipped in this package.

Every message is ``0xC3 0x01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's Parsing Canonical Form + the Avro binary body. Schemas are parsed once at import; a
reader looks the fingerprint up in :data:`agenttrail.schemas.registry.KNOWN` and rejects anything
it does not know with ``InvalidEvent("unknown_schema")``.

Logical types are stripped from the schema used for *reading* (the binary encoding is the same),
so ``timestamp-micros`` comes back as the plain ``int`` of epoch microseconds it was written as.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from agenttrail.errors import InvalidEvent

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """One parsed schema: its full name, fingerprint and the parsed forms used to write and read."""

    name: str
    fingerprint: bytes  # 8 bytes, CRC-64-AVRO, little-endian (as it appears on the wire)
    canonical_form: str
    writer: Any  # fastavro parsed schema
    reader: Any  # the same schema without logical types: longs stay ints

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


def read_avsc(filename: str) -> dict[str, Any]:
    """The JSON of a schema file shipped in ``agenttrail/schemas``."""
    text = resources.files("agenttrail.schemas").joinpath(filename).read_text(encoding="utf-8")
    return json.loads(text)


def _resolve(node: Any, named: dict[str, Any]) -> Any:
    """Inline references to other named schemas (e.g. ``"agenttrail.Envelope"``)."""
    if isinstance(node, str):
        return named.get(node, node)
    if isinstance(node, list):
        return [_resolve(item, named) for item in node]
    if isinstance(node, dict):
        return {key: (_resolve(value, named) if key in ("type", "items", "values", "fields") else value)
                for key, value in node.items()}
    return node


def _strip_logical(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_logical(item) for item in node]
    if isinstance(node, dict):
        return {key: _strip_logical(value) for key, value in node.items() if key != "logicalType"}
    return node


def build_schema(schema_json: dict[str, Any], named: dict[str, Any] | None = None) -> AvroSchema:
    """Parse a schema once and compute its single-object fingerprint."""
    full = _resolve(schema_json, named or {})
    writer = parse_schema(full)
    canonical = to_parsing_canonical_form(writer)
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    reader = parse_schema(_strip_logical(full))
    return AvroSchema(name=writer["name"], fingerprint=fp, canonical_form=canonical, writer=writer,
                      reader=reader)


def encode(schema: AvroSchema, record: dict[str, Any]) -> bytes:
    """Single-object encode ``record`` with ``schema``; a record that does not fit raises bad_field."""
    out = BytesIO()
    out.write(schema.header)
    try:
        schemaless_writer(out, schema.writer, record)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise InvalidEvent("bad_field", f"cannot encode {schema.name}: {exc}") from None
    return out.getvalue()


def fingerprint_of(data: bytes) -> bytes:
    """The 8-byte schema fingerprint in a single-object message (malformed if there is none)."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise InvalidEvent("malformed", "not an Avro single-object message (bad magic or too short)")
    return bytes(data[2:HEADER_LEN])


def decode(data: bytes, known: dict[bytes, AvroSchema]) -> tuple[AvroSchema, dict[str, Any]]:
    """Decode a single-object message whose fingerprint is in ``known``; the whole input must be used."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidEvent("malformed", f"expected bytes, got {type(data).__name__}")
    fp = fingerprint_of(bytes(data[:HEADER_LEN]))
    schema = known.get(fp)
    if schema is None:
        raise InvalidEvent("unknown_schema", f"schema fingerprint {fp.hex()} is not a known version")
    body = BytesIO(data)
    body.seek(HEADER_LEN)
    try:
        record = schemaless_reader(body, schema.reader, None)
    except Exception as exc:  # fastavro raises EOFError, StopIteration, IndexError, UnicodeError, ...
        raise InvalidEvent("malformed", f"cannot decode {schema.name}: {type(exc).__name__}") from None
    if body.tell() != len(data):
        raise InvalidEvent("malformed", f"{len(data) - body.tell()} trailing bytes after {schema.name}")
    if not isinstance(record, dict):
        raise InvalidEvent("malformed", f"{schema.name} did not decode to a record")
    return schema, record
