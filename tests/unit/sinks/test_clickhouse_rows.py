"""Pure row mapping: typed columns from payloads, hex hashes, expiry, DLQ and checkpoint rows."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.clickhouse.rows import (
    CHECKPOINT_COLUMNS,
    DLQ_COLUMNS,
    EVENT_COLUMNS,
    MAX_DATETIME,
    checkpoint_row,
    dlq_row,
    event_row,
    expires_at,
    typed_fields,
)

TS = 1_767_225_600_123_456


def _record(event_type: str, payload: object, **env_kw: object) -> LedgerRecord:
    body = canonical_json(payload) if not isinstance(payload, bytes) else payload
    env = Envelope(
        event_id="0190a0c4-0000-7000-8000-000000000000", tenant_id="acme", agent_id="a1", session_id="s1",
        seq=3, ts=TS, type=event_type, payload=body, payload_sha256=hashlib.sha256(body).digest(),
        attributes={"k": "v"}, key_id="k1", signature=b"\x01" * 64, **env_kw,  # type: ignore[arg-type]
    )
    return LedgerRecord(env, 7, b"\x00" * 32, b"\xab" * 32, True, 2, 99)


def test_event_row_columns_and_values() -> None:
    rec = _record("llm_call", {"model": "m", "prompt_tokens": 10, "completion_tokens": 5,
                               "cost_usd": 0.25, "latency_ms": 120})
    row = dict(zip(EVENT_COLUMNS, event_row(rec, 1, 42, retention_days=30), strict=True))
    assert (row["tenant_id"], row["session_id"], row["chain_index"], row["seq"]) == ("acme", "s1", 7, 3)
    assert row["ts"] == TS
    assert row["payload_sha256"] == hashlib.sha256(rec.envelope.payload).hexdigest()
    assert row["signature"] == "01" * 64 and row["prev_hash"] == "00" * 32 and row["entry_hash"] == "ab" * 32
    assert (row["seq_gap"], row["source_partition"], row["source_offset"]) == (1, 2, 99)
    assert (row["ledger_partition"], row["ledger_offset"]) == (1, 42)
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == ("m", 10, 5)
    assert (row["cost_usd"], row["latency_ms"], row["tool"]) == (0.25, 120.0, "")
    assert row["expires_at"] == TS // 1_000_000 + 30 * 86_400
    assert json.loads(row["payload"])["model"] == "m"


def test_tool_result_fields() -> None:
    payload = canonical_json({"tool": "sql", "call_id": "c", "status": "error", "latency_ms": 7})
    assert typed_fields("tool_result", payload) == ("", 0, 0, 0.0, 7.0, "sql", "error")
    assert typed_fields("tool_call", canonical_json({"tool": "sql"}))[5:] == ("sql", "")
    assert typed_fields("message", payload) == ("", 0, 0, 0.0, 0.0, "", "")


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1,2]", b'{"prompt_tokens": "many"}',
                                     b'{"prompt_tokens": true, "cost_usd": 1e999, "model": 5}',
                                     b'{"prompt_tokens": -4}'])
def test_bad_or_erased_payloads_give_defaults(payload: bytes) -> None:
    assert typed_fields("llm_call", payload) == ("", 0, 0, 0.0, 0.0, "", "")


@given(st.dictionaries(st.sampled_from(["model", "prompt_tokens", "cost_usd", "latency_ms", "tool"]),
                       st.one_of(st.integers(), st.floats(), st.text(), st.none(), st.booleans())))
def test_typed_fields_never_raise(body: dict[str, object]) -> None:
    for event_type in ("llm_call", "tool_call", "tool_result"):
        model, prompt, completion, cost, latency, tool, status = typed_fields(
            event_type, json.dumps(body).encode())
        assert prompt >= 0 and completion >= 0 and isinstance(model, str) and isinstance(tool, str)
        assert isinstance(cost, float) and isinstance(latency, float) and isinstance(status, str)


def test_lessons_never_expire() -> None:
    assert expires_at("lesson", TS, 1) == MAX_DATETIME
    assert expires_at("message", TS, 1) == TS // 1_000_000 + 86_400


def test_dlq_row_from_contract_json() -> None:
    dead = {"reason": "bad_signature", "detail": "sig", "tenant_topic": "agenttrail.acme.events",
            "partition": 3, "offset": 17, "ts": TS, "original_b64": "AAE="}
    row = dict(zip(DLQ_COLUMNS, dlq_row(None, json.dumps(dead).encode(), 0, 5), strict=True))
    assert row["tenant_id"] == "acme"  # from the topic when the key is missing
    assert (row["reason"], row["source_partition"], row["source_offset"], row["ts"]) == (
        "bad_signature", 3, 17, TS)
    garbage = dict(zip(DLQ_COLUMNS, dlq_row(b"globex", b"\xff\x00", 0, 6), strict=True))
    assert garbage["tenant_id"] == "globex" and garbage["reason"] == "unreadable"
    assert base64.b64decode(garbage["original_b64"]) == b"\xff\x00"


def test_checkpoint_row_keeps_raw_bytes() -> None:
    value = b'{"tenant_id": "acme", "tree_size": 12, "root_hash": "ff"}'
    row = dict(zip(CHECKPOINT_COLUMNS, checkpoint_row(None, value, 1, 8, 1234), strict=True))
    assert (row["tenant_id"], row["tree_size"], row["root_hash"], row["kafka_ts"]) == ("acme", 12, "ff", 1234)
    assert bytes.fromhex(row["raw_value"]) == value
    opaque = dict(zip(CHECKPOINT_COLUMNS, checkpoint_row(b"acme", b"\x01sig", 0, 1, 0), strict=True))
    assert opaque["tenant_id"] == "acme" and bytes.fromhex(opaque["raw_value"]) == b"\x01sig"
