"""The code reproduces tests/vectors/envelope_v1.json byte for byte, and docs/signing.md agrees."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from agenttrail.crypto import SigningKey, sha256, verify
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope, decode_envelope, encode_envelope, signing_bytes

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "envelope_v1.json").read_text(encoding="utf-8"))
KEY = SigningKey.from_seed(bytes.fromhex(VECTORS["private_key_seed_hex"]))


def _spec_signing_bytes(e: dict[str, Any], payload_sha256: bytes) -> bytes:
    """docs/signing.md section 2, written out independently of the library."""
    def s(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack(">I", len(raw)) + raw

    out = b"agenttrail/event/v1\n" + s(e["event_id"]) + s(e["tenant_id"]) + s(e["agent_id"])
    out += s(e["session_id"]) + struct.pack(">qq", e["seq"], e["ts"]) + s(e["type"])
    out += struct.pack(">I", 32) + payload_sha256 + struct.pack(">I", len(e["attributes"]))
    for key in sorted(e["attributes"], key=lambda k: k.encode("utf-8")):
        out += s(key) + s(e["attributes"][key])
    return out + s(e["key_id"])


def test_key_material() -> None:
    assert KEY.public_key.hex() == VECTORS["public_key_hex"]
    assert KEY.key_id == VECTORS["key_id"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_vector(vector: dict[str, Any]) -> None:
    e = vector["envelope"]
    payload = canonical_json(e["payload"])
    assert payload.decode("utf-8") == vector["payload_canonical"]
    assert sha256(payload).hex() == vector["payload_sha256_hex"]
    env = Envelope(e["event_id"], e["tenant_id"], e["agent_id"], e["session_id"], e["seq"], e["ts"], e["type"],
                   payload, sha256(payload), e["attributes"], e["key_id"])
    sb = signing_bytes(env)
    assert sb.hex() == vector["signing_bytes_hex"]
    assert sb == _spec_signing_bytes(e, sha256(payload))
    assert sha256(sb).hex() == vector["signing_bytes_sha256_hex"]
    signature = KEY.sign(sb)  # Ed25519 is deterministic
    assert signature.hex() == vector["signature_hex"]
    assert verify(KEY.public_key, sb, signature)
    signed = Envelope(*[getattr(env, f) for f in Envelope.__slots__][:-1], signature)
    assert encode_envelope(signed).hex() == vector["avro_single_object_hex"]
    assert decode_envelope(bytes.fromhex(vector["avro_single_object_hex"])) == signed


def test_docs_worked_example_matches_vector_2() -> None:
    doc = (ROOT / "docs" / "signing.md").read_text(encoding="utf-8")
    block = doc.split("## 3.")[1].split("```")[1]
    hex_text = "".join(tok for line in block.splitlines() for tok in line.split()
                       if re.fullmatch(r"[0-9a-f]+", tok))
    assert hex_text == VECTORS["vectors"][1]["signing_bytes_hex"]
    assert VECTORS["vectors"][1]["signature_hex"] in doc.replace("\n", "")
