"""Semantic recall on the real offline model: ledger records -> embed_batch -> LanceDB -> recall."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agenttrail.processors.embed import decode_embedding, embed_batch, encode_embedding
from agenttrail.processors.embedder import MiniLMEmbedder
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.lancedb import InvalidQuery, LanceStore, recall

UNRELATED = [
    ("message", {"role": "user", "text": "Can you suggest a good pasta recipe for dinner?"}),
    ("message", {"role": "assistant", "text": "The quarterly marketing report is attached."}),
    ("lesson", {"text": "Always greet the customer by name."}),
    ("tool_result", {"tool": "weather", "call_id": "c1", "status": "ok", "output": "Sunny, 24 degrees"}),
    ("policy_decision", {"policy": "spend", "decision": "allow", "reason": "under the monthly budget"}),
    ("llm_call", {"model": "m", "prompt": "Translate 'hello' to French", "completion": "Bonjour"}),
]
TARGET = ("error", {"kind": "db", "message": "Postgres connection timed out after 30s"})


@pytest.fixture(scope="module")
def minilm() -> Iterator[MiniLMEmbedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield MiniLMEmbedder()


def ledger(tenant: str, n: int, event_type: str, payload: object) -> LedgerRecord:
    body = canonical_json(payload)
    env = Envelope(event_id=f"{tenant}-{n}", tenant_id=tenant, agent_id="a", session_id=f"{tenant}-s",
                   seq=n, ts=1_700_000_000_000_000 + n, type=event_type, payload=body,
                   payload_sha256=hashlib.sha256(body).digest())
    return LedgerRecord(env, n, bytes(32), bytes(32), False, 0, n)


def test_recall_finds_the_timeout_above_unrelated_events(tmp_path: Path, minilm: MiniLMEmbedder) -> None:
    records = [ledger("acme", i, t, p) for i, (t, p) in enumerate([*UNRELATED, TARGET])]
    embedded = embed_batch(records, minilm)
    store = LanceStore(str(tmp_path))
    store.upsert([decode_embedding(encode_embedding(r)) for r in embedded])  # through the wire format
    hits = recall(store, minilm, "acme", "database timeout", k=5)
    assert hits[0].text == "Postgres connection timed out after 30s" and hits[0].type == "error"
    assert hits[0].score > hits[1].score + 0.15
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    only_errors = recall(store, minilm, "acme", "database timeout", k=5, type="error")
    assert [h.event_id for h in only_errors] == [hits[0].event_id]


def test_recall_never_crosses_tenants(tmp_path: Path, minilm: MiniLMEmbedder) -> None:
    # beta holds thousands of rows closer to the query than anything acme has; acme holds two.
    beta_texts = ["database timeout", "the database timed out", "DB timeout error"]
    beta = embed_batch([ledger("beta", i, "error", {"kind": "db", "message": t})
                        for i, t in enumerate(beta_texts)], minilm)
    rng = np.random.default_rng(7)
    near = np.asarray(beta[0].vector, np.float32) + rng.standard_normal((3000, 384)).astype(np.float32) * 0.01
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    beta += [replace(beta[0], event_id=f"near-{i}", vector=tuple(v.tolist())) for i, v in enumerate(near)]
    acme = embed_batch([ledger("acme", 0, *TARGET), ledger("acme", 1, *UNRELATED[0])], minilm)
    store = LanceStore(str(tmp_path))
    store.upsert(beta + acme)
    acme_hits = recall(store, minilm, "acme", "database timeout", k=10)
    assert [h.tenant_id for h in acme_hits] == ["acme", "acme"]
    assert acme_hits[0].text == TARGET[1]["message"]
    beta_hits = recall(store, minilm, "beta", "database timeout", k=10)
    assert len(beta_hits) == 10 and all(h.tenant_id == "beta" for h in beta_hits)
    assert beta_hits[0].score == pytest.approx(1.0, abs=1e-4) and beta_hits[-1].score > acme_hits[0].score


def test_recall_validates_before_embedding(tmp_path: Path, minilm: MiniLMEmbedder) -> None:
    store = LanceStore(str(tmp_path))
    with pytest.raises(InvalidQuery):
        recall(store, minilm, "acme", "   ")
    assert recall(store, minilm, "acme", "anything") == []
