"""A deterministic generator of chained ledger records (for tests and `agenttrail bench sink`).

Records are not signed (the signature is random bytes); everything else is what the chain
processor emits: real signing bytes, real chain hashes, payloads per docs/contracts.md.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agenttrail.processors.chain import GENESIS, extend
from agenttrail.schemas.canonical import canonical_json, uuid7
from agenttrail.schemas.envelope import Envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord

MODELS = ("gpt-4o", "claude-sonnet", "llama-70b")
TOOLS = ("search", "shell", "http_get", "sql")
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    tenants: Sequence[str] = ("acme", "globex", "initech")
    agents_per_tenant: int = 5
    events: int = 50_000
    mean_session_events: int = 40
    span_hours: int = 72
    seed: int = 7
    payload_pad: int = 0


def _payload(rng: random.Random, event_type: str, pad: int) -> dict[str, object]:
    if event_type == "llm_call":
        prompt = rng.randint(10, 4000)
        completion = rng.randint(1, 1000)
        return {"model": rng.choice(MODELS), "prompt_tokens": prompt, "completion_tokens": completion,
                "cost_usd": round((prompt * 3 + completion * 15) / 1_000_000, 6),
                "latency_ms": rng.randint(50, 9000), "prompt": "p" * pad}
    if event_type == "tool_call":
        return {"tool": rng.choice(TOOLS), "call_id": f"c{rng.randint(0, 10**9)}", "args": {"q": "x" * pad}}
    if event_type == "tool_result":
        return {"tool": rng.choice(TOOLS), "call_id": f"c{rng.randint(0, 10**9)}",
                "status": "error" if rng.random() < 0.1 else "ok", "latency_ms": rng.randint(1, 3000)}
    if event_type == "message":
        return {"role": rng.choice(("user", "assistant")), "text": "hello " * (1 + pad // 6)}
    if event_type == "error":
        return {"kind": "runtime", "message": "boom"}
    if event_type == "lesson":
        return {"text": "always check the tool status", "category": "ops"}
    return {"note": "n"}


_BODY_TYPES = ("llm_call", "tool_call", "tool_result", "message", "error", "lesson", "custom")
_BODY_WEIGHTS = (30, 20, 20, 20, 5, 2, 3)


def generate(spec: SyntheticSpec = SyntheticSpec()) -> Iterator[LedgerRecord]:
    """Exactly `spec.events` records, sessions interleaved in time order per tenant."""
    rng = random.Random(spec.seed)
    span_us = spec.span_hours * 3_600_000_000
    produced = 0
    session_no = 0
    while produced < spec.events:
        tenant = spec.tenants[session_no % len(spec.tenants)]
        agent = f"agent-{rng.randrange(spec.agents_per_tenant)}"
        session_id = f"s{session_no:07d}"
        session_no += 1
        length = min(spec.events - produced, max(2, int(rng.expovariate(1 / spec.mean_session_events))))
        ts = START_US + rng.randrange(span_us)
        state = GENESIS
        for i in range(length):
            if i == 0:
                event_type = "session_start"
            elif i == length - 1 and rng.random() < 0.8:
                event_type = "session_end"
            else:
                event_type = rng.choices(_BODY_TYPES, _BODY_WEIGHTS)[0]
            payload = canonical_json(_payload(rng, event_type, spec.payload_pad))
            env = Envelope(
                event_id=uuid7(ts // 1000, rng.randbytes(10)), tenant_id=tenant, agent_id=agent,
                session_id=session_id, seq=i, ts=ts, type=event_type, payload=payload,
                payload_sha256=hashlib.sha256(payload).digest(), attributes={"env": "test"},
                key_id="k1", signature=rng.randbytes(64),
            )
            index, prev, head, state = extend(state, signing_bytes(env))
            yield LedgerRecord(env, index, prev, head, False, session_no % 4, produced)
            produced += 1
            ts += rng.randint(1_000, 120_000_000)
