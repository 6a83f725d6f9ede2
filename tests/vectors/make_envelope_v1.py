"""Regenerate envelope_v1.json (run from the repo root: python tests/vectors/make_envelope_v1.py).

Only do this on purpose: the vectors pin the signing-bytes layout for SDKs in other languages.
"""

from __future__ import annotations

import json
from pathlib import Path

from agenttrail.crypto import SigningKey, sha256
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import SIGNING_DOMAIN, Envelope, encode_envelope, signing_bytes

SEED = bytes(range(32))  # 000102...1f: a test key, never a real one

CASES: list[dict[str, object]] = [
    {"name": "llm_call with attributes", "event_id": "0190f3a2-5c1e-7a3b-9f10-23456789abcd",
     "tenant_id": "acme", "agent_id": "agent-7", "session_id": "0190f3a2-5c00-7000-8000-000000000001",
     "seq": 3, "ts": 1722470400123456, "type": "llm_call",
     "payload": {"model": "gpt-4o", "prompt_tokens": 812, "completion_tokens": 96, "cost_usd": 0.0031,
                 "latency_ms": 640.5},
     "attributes": {"env": "prod", "region": "eu-west-1"}},
    {"name": "session_start, empty payload and attributes",
     "event_id": "0190f3a2-5c00-7000-8000-00000000000a",
     "tenant_id": "t0", "agent_id": "a", "session_id": "s", "seq": 0, "ts": 0, "type": "session_start",
     "payload": {}, "attributes": {}},
    {"name": "unicode text, attribute keys sorted by UTF-8 bytes", "event_id":
     "0190f3a2-5c00-7fff-bfff-ffffffffffff", "tenant_id": "tenant_b-2", "agent_id": "agént/Ω",
     "session_id": "séance-1", "seq": 4294967301, "ts": 1722470400999999, "type": "message",
     "payload": {"role": "user", "text": "héllo \u2028 wörld 😀 日本", "z": [1.5e-7, 1e21, -0.0, 100]},
     "attributes": {"b": "2", "a": "1", "aa": "3", "B": "0", "é": "ü", "": "empty key"}},
    {"name": "lesson", "event_id": "0190f3a2-5c00-7abc-8def-0123456789ab", "tenant_id": "acme",
     "agent_id": "agent-7", "session_id": "sess-42", "seq": 17, "ts": 1722470401000000, "type": "lesson",
     "payload": {"text": "retry the search tool with a narrower query", "category": "tools"},
     "attributes": {"model": "claude-sonnet"}},
]


def build() -> dict[str, object]:
    key = SigningKey.from_seed(SEED)
    vectors = []
    for case in CASES:
        payload = canonical_json(case["payload"])
        env = Envelope(
            event_id=str(case["event_id"]), tenant_id=str(case["tenant_id"]), agent_id=str(case["agent_id"]),
            session_id=str(case["session_id"]), seq=int(case["seq"]), ts=int(case["ts"]),  # type: ignore[call-overload]
            type=str(case["type"]), payload=payload, payload_sha256=sha256(payload),
            attributes=dict(case["attributes"]), key_id=key.key_id,  # type: ignore[call-overload]
        )
        sb = signing_bytes(env)
        signature = key.sign(sb)
        signed = Envelope(**{**{f: getattr(env, f) for f in env.__slots__}, "signature": signature})
        vectors.append({
            "name": case["name"],
            "envelope": {k: v for k, v in case.items() if k != "name"} | {"key_id": key.key_id},
            "payload_canonical": payload.decode("utf-8"),
            "payload_sha256_hex": sha256(payload).hex(),
            "signing_bytes_hex": sb.hex(),
            "signing_bytes_sha256_hex": sha256(sb).hex(),
            "signature_hex": signature.hex(),
            "avro_single_object_hex": encode_envelope(signed).hex(),
        })
    return {
        "description": "agenttrail envelope v1: fields -> canonical payload -> signing bytes -> Ed25519. "
                       "See docs/signing.md.",
        "private_key_seed_hex": SEED.hex(),
        "public_key_hex": key.public_key.hex(),
        "key_id": key.key_id,
        "signing_domain_hex": SIGNING_DOMAIN.hex(),
        "vectors": vectors,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("envelope_v1.json")
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
