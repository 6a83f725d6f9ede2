"""The embed stage's pure core: text extraction, dedupe + fan-out, batching, wire format."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.errors import InvalidEvent
from agenttrail.processors.embed import (
    MAX_TEXT_CHARS,
    TEXT_TYPES,
    Batcher,
    EmbeddingRecord,
    TextItem,
    decode_embedding,
    embed_batch,
    embed_items,
    encode_embedding,
    extract_text,
    text_item,
)
from agenttrail.processors.embedder import FakeEmbedder
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import EVENT_TYPES, Envelope
from agenttrail.schemas.ledger import LedgerRecord


def ledger(event_type: str, payload: object, *, tenant: str = "acme", event_id: str = "e1",
           session: str = "s1", ts: int = 1_700_000_000_000_000, raw: bytes | None = None) -> LedgerRecord:
    body = canonical_json(payload) if raw is None else raw
    env = Envelope(event_id=event_id, tenant_id=tenant, agent_id="a1", session_id=session, seq=0, ts=ts,
                   type=event_type, payload=body, payload_sha256=hashlib.sha256(body).digest())
    return LedgerRecord(env, chain_index=0, prev_hash=bytes(32), entry_hash=bytes(32), seq_gap=False,
                        source_partition=0, source_offset=0)


def test_text_types_are_envelope_types() -> None:
    assert set(EVENT_TYPES) >= TEXT_TYPES


@pytest.mark.parametrize(
    ("event_type", "payload", "expected"),
    [
        ("message", {"role": "user", "text": "deploy the thing"}, "deploy the thing"),
        ("error", {"kind": "timeout", "message": "Postgres timed out"}, "Postgres timed out"),
        ("lesson", {"text": "retry with backoff", "category": "ops"}, "retry with backoff"),
        ("policy_decision", {"policy": "p", "decision": "deny", "reason": "no prod"}, "no prod"),
        ("tool_result", {"tool": "sh", "call_id": "c", "status": "ok", "latency_ms": 3, "output": "42 files"},
         "42 files"),
        ("llm_call", {"model": "m", "prompt": "What is 2+2?", "completion": "4"}, "What is 2+2?\n4"),
        ("llm_call", {"model": "m", "completion": "only this"}, "only this"),
        ("llm_call", {"model": "m", "prompt": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": "hi"}]}, "be brief\nhi"),
        ("tool_result", {"tool": "t", "output": {"rows": 3}}, '{"rows":3}'),
    ],
)
def test_extracts_text_by_type(event_type: str, payload: dict, expected: str) -> None:
    assert extract_text(event_type, payload) == expected


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("tool_call", {"tool": "sh", "call_id": "c", "args": {"cmd": "rm -rf /"}}),
        ("session_start", {"text": "free-form is not embedded"}),
        ("custom", {"text": "nor this"}),
        ("llm_call", {"model": "m", "prompt_tokens": 3, "completion_tokens": 1}),  # no text captured
        ("tool_result", {"tool": "t", "status": "ok"}),
        ("message", {"role": "user", "text": "   "}),
    ],
)
def test_events_without_text_are_skipped(event_type: str, payload: dict) -> None:
    assert text_item("acme", "e", "s", 1, event_type, canonical_json(payload)) is None


def test_bad_or_erased_payloads_are_skipped() -> None:
    assert text_item("acme", "e", "s", 1, "message", b"") is None
    assert text_item("acme", "e", "s", 1, "message", b"\xff not json") is None
    assert text_item("acme", "e", "s", 1, "message", b'["a list"]') is None


def test_long_text_is_capped() -> None:
    item = text_item("acme", "e", "s", 1, "message", {"text": "x" * (MAX_TEXT_CHARS * 2)})
    assert item is not None and len(item.text) == MAX_TEXT_CHARS


def test_embed_batch_dedupes_by_text_and_fans_out() -> None:
    records = [
        ledger("message", {"role": "user", "text": "same words"}, event_id="e1", session="s1"),
        ledger("tool_call", {"tool": "x", "call_id": "c", "args": {}}, event_id="e2"),
        ledger("error", {"kind": "k", "message": "same words"}, event_id="e3", tenant="beta"),
        ledger("lesson", {"text": "different"}, event_id="e4"),
        ledger("message", {"role": "user", "text": "same words"}, event_id="e5", session="s2"),
    ]
    fake = FakeEmbedder()
    out = embed_batch(records, fake)
    assert [r.event_id for r in out] == ["e1", "e3", "e4", "e5"]
    assert fake.calls == [["same words", "different"]]  # each distinct text embedded once
    assert out[0].vector == out[1].vector == out[3].vector != out[2].vector
    assert (out[1].tenant_id, out[1].type, out[3].session_id) == ("beta", "error", "s2")
    assert all(r.model == fake.model_id and len(r.vector) == fake.dim for r in out)
    assert embed_batch([records[1]], fake) == [] and len(fake.calls) == 1  # nothing to embed: no call


def test_embed_items_rejects_a_wrong_shaped_embedder() -> None:
    class Broken(FakeEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            return np.zeros((len(texts) + 1, 4), dtype=np.float32)

    with pytest.raises(ValueError):
        embed_items([TextItem("acme", "e", "s", 1, "message", "t")], Broken())


def test_batcher_flushes_on_size() -> None:
    batcher = Batcher(max_items=3, max_wait_s=100)
    assert batcher.add("a", now=0) is None
    assert batcher.add("b", now=1) is None
    assert batcher.add("c", now=2) == ["a", "b", "c"]
    assert len(batcher) == 0 and batcher.take() == []


def test_batcher_flushes_on_time_from_the_first_item() -> None:
    batcher = Batcher(max_items=100, max_wait_s=1.0)
    assert batcher.add("a", now=10.0) is None
    assert not batcher.due(10.9)
    assert batcher.due(11.0)
    assert batcher.add("b", now=11.2) == ["a", "b"]
    assert batcher.add("c", now=50.0) is None  # the clock restarts with the next first item
    assert not batcher.due(50.5)


def record(vector: tuple[float, ...], **kw: object) -> EmbeddingRecord:
    fields = {"tenant_id": "acme", "event_id": "01h-e", "session_id": "s", "ts": 17, "type": "message",
              "text": "héllo \"quoted\"\n", "vector": vector, "model": "m"}
    fields.update(kw)
    return EmbeddingRecord(**fields)  # type: ignore[arg-type]


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=400))
def test_wire_format_round_trips_float32_exactly(values: list[float]) -> None:
    rec = record(tuple(values))
    back = decode_embedding(encode_embedding(rec))
    assert back == rec
    assert np.array_equal(np.asarray(back.vector, np.float32), np.asarray(values, np.float32))


def test_wire_format_is_plain_json_with_the_contract_fields() -> None:
    obj = json.loads(encode_embedding(record((0.5, -0.25))))
    assert set(obj) == {"tenant_id", "event_id", "session_id", "ts", "type", "text", "model", "vector"}
    assert obj["vector"] == [0.5, -0.25]


def test_encode_refuses_non_finite() -> None:
    with pytest.raises(InvalidEvent):
        encode_embedding(record((float("nan"),)))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("event_id"),
        lambda o: o.update(ts="17"),
        lambda o: o.update(ts=True),
        lambda o: o.update(vector=[]),
        lambda o: o.update(vector=[1.0, "2"]),
        lambda o: o.update(vector=[1e39]),  # overflows float32
        lambda o: o.update(tenant_id="Acme'; DROP"),
        lambda o: o.update(model=3),
    ],
)
def test_decode_rejects_bad_records(mutate) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(encode_embedding(record((0.5, -0.25))))
    mutate(obj)
    with pytest.raises(InvalidEvent) as err:
        decode_embedding(json.dumps(obj).encode())
    assert err.value.reason == "malformed"


@pytest.mark.parametrize("data", [b"", b"not json", b"[1,2]", b"\xff\xfe"])
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_embedding(data)
