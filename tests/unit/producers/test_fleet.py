"""The fleet: a deterministic, realistic mix whose payloads follow the contracts; the runner's pacing."""

from __future__ import annotations

import json
import random
from collections import Counter

from agenttrail.producers.fleet import MODELS, TOOLS, dev_agents, run_fleet, session_script
from agenttrail.producers.producer import MemorySink
from agenttrail.schemas.envelope import decode_envelope, verify_envelope

CONTRACT_KEYS = {
    "llm_call": {"model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms"},
    "tool_call": {"tool", "call_id", "args"},
    "tool_result": {"tool", "call_id", "status", "latency_ms"},
    "message": {"role", "text"},
    "error": {"kind", "message"},
    "policy_decision": {"policy", "decision", "reason"},
    "lesson": {"text"},
}


def test_scripts_are_deterministic_per_seed() -> None:
    a = [session_script(random.Random(7), i) for i in range(20)]
    b = [session_script(random.Random(7), i) for i in range(20)]
    c = [session_script(random.Random(8), i) for i in range(20)]
    assert a == b and a != c


def test_mix_is_realistic_and_follows_the_contracts() -> None:
    rng = random.Random(1)
    events = [e for i in range(400) for e in session_script(rng, i)]
    types = Counter(e.type for e in events)
    assert set(types) == set(CONTRACT_KEYS)  # every kind shows up over enough sessions
    assert types["llm_call"] > types["error"] and types["tool_call"] == types["tool_result"]
    for e in events:
        assert CONTRACT_KEYS[e.type] <= set(e.payload), e
    llm = [e.payload for e in events if e.type == "llm_call"]
    assert {p["model"] for p in llm} <= set(MODELS) and len({p["model"] for p in llm}) > 2
    assert all(p["cost_usd"] > 0 and p["prompt_tokens"] > 0 for p in llm)
    results = [e.payload for e in events if e.type == "tool_result"]
    assert {p["tool"] for p in results} <= set(TOOLS)
    assert 0 < sum(p["status"] == "error" for p in results) < len(results) / 4
    calls = {e.payload["call_id"] for e in events if e.type == "tool_call"}
    assert {p["call_id"] for p in results} == calls


def test_runner_sends_signed_sessions_for_every_tenant() -> None:
    sink = MemorySink()
    agents = dev_agents(["t1", "t2"], 3)
    report = run_fleet(sink, agents, rate=0, duration=0.3, seed=3)
    assert report.sent == len(sink.messages) > 100
    assert report.agents == 6 and report.tenants == 2
    keys = {agent_id: key for rows in agents.values() for agent_id, _, key in rows}
    per_session: dict[str, list[int]] = {}
    for topic, key, value in sink.messages:
        env = decode_envelope(value)
        assert topic == f"agenttrail.{env.tenant_id}.events" and key == env.session_id.encode()
        assert verify_envelope(env, keys[env.agent_id].public_key)
        per_session.setdefault(env.session_id, []).append(env.seq)
        if env.type == "llm_call":
            assert set(json.loads(env.payload)) >= CONTRACT_KEYS["llm_call"]
    assert all(seqs == list(range(len(seqs))) for seqs in per_session.values())
    ends = Counter(decode_envelope(v).type for _, _, v in sink.messages)
    assert ends["session_start"] == ends["session_end"] == report.sessions  # every session closed


def test_runner_keeps_to_the_target_rate() -> None:
    report = run_fleet(MemorySink(keep=False), dev_agents(["t"], 2), rate=400, duration=0.5)
    assert 150 <= report.sent <= 260  # 200 due plus the closing session_end events
