"""AgentClient and sessions: numbering, typed payloads, signatures, and call-site errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agenttrail.config import Settings
from agenttrail.crypto import SigningKey
from agenttrail.errors import InvalidEvent, TenantError
from agenttrail.producers.client import AgentClient
from agenttrail.producers.producer import MemorySink
from agenttrail.schemas.envelope import Envelope, decode_envelope, verify_envelope

KEY = SigningKey.from_seed(b"\x01" * 32)


def _client(sink: MemorySink, **kw: Any) -> AgentClient:
    return AgentClient(None, "acme", "agent-1", None, KEY, producer=sink, **kw)


def _sent(sink: MemorySink) -> list[Envelope]:
    return [decode_envelope(value) for _, _, value in sink.messages]


def test_session_numbers_seq_and_brackets_with_start_and_end() -> None:
    sink = MemorySink()
    client = _client(sink)
    with client.session("s-1") as s:
        s.llm_call("gpt-4o", 812, 96, 0.0031, 640.5, prompt="hi", completion="hello")
        call = s.tool_call("web_search", {"q": "refunds"})
        s.tool_result("web_search", call, "ok", 41.5, output="3 results")
        s.message("assistant", "done")
        s.error("TimeoutError", "slow tool")
        s.policy_decision("spend_limit", "deny", "over budget")
        s.lesson("narrow the query", category="tools")
        s.custom({"anything": [1, 2]}, attributes={"k": "v"})
    events = _sent(sink)
    assert [e.seq for e in events] == list(range(10))
    assert [e.type for e in events] == ["session_start", "llm_call", "tool_call", "tool_result", "message",
                                        "error", "policy_decision", "lesson", "custom", "session_end"]
    assert {t for t, _, _ in sink.messages} == {"agenttrail.acme.events"}
    assert {k for _, k, _ in sink.messages} == {b"s-1"}
    assert all(verify_envelope(e, KEY.public_key) for e in events)
    assert events[8].attributes == {"k": "v"}
    payloads = [json.loads(e.payload) for e in events]
    assert set(payloads[1]) == {"model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "prompt",
                                "completion"}
    assert payloads[2] == {"tool": "web_search", "call_id": call, "args": {"q": "refunds"}}
    assert payloads[3] == {"tool": "web_search", "call_id": call, "status": "ok", "latency_ms": 41.5,
                           "output": "3 results"}
    assert payloads[4] == {"role": "assistant", "text": "done"}
    assert payloads[5] == {"kind": "TimeoutError", "message": "slow tool"}
    assert payloads[6] == {"policy": "spend_limit", "decision": "deny", "reason": "over budget"}
    assert payloads[7] == {"text": "narrow the query", "category": "tools"}
    assert payloads[9]["status"] == "ok"


def test_exception_in_session_ends_it_with_error_status() -> None:
    sink = MemorySink()
    with pytest.raises(RuntimeError), _client(sink).session() as s:
        s.message("user", "hi")
        raise RuntimeError("boom")
    last = _sent(sink)[-1]
    assert last.type == "session_end" and json.loads(last.payload) == {"status": "error", "error": "RuntimeError",
                                                                         "events": 2}


def test_sessions_get_distinct_uuid7_ids() -> None:
    sink = MemorySink()
    client = _client(sink)
    with client.session() as a, client.session() as b:
        assert a.session_id != b.session_id
    assert {e.session_id for e in _sent(sink)} == {a.session_id, b.session_id}


@pytest.mark.parametrize("payload", [{"s": {1, 2}}, {"b": b"bytes"}, {"f": float("nan")}, {"o": object()}])
def test_unserialisable_payload_raises_and_sends_nothing(payload: dict[str, Any]) -> None:
    sink = MemorySink()
    s = _client(sink).session("s")
    s.start()
    with pytest.raises(InvalidEvent) as err:
        s.custom(payload)
    assert err.value.reason == "bad_field"
    assert len(sink.messages) == 1 and s.seq == 1  # seq did not move: no gap later
    s.custom({"ok": True})
    assert [e.seq for e in _sent(sink)] == [0, 1]


def test_oversize_event_raises_at_call_site() -> None:
    sink = MemorySink()
    s = _client(sink, max_event_bytes=2048).session("s")
    s.message("user", "x" * 1500)  # fits
    with pytest.raises(InvalidEvent) as err:
        s.message("user", "x" * 3000)
    assert err.value.reason == "oversize" and "2048" in str(err.value)
    assert len(sink.messages) == 1 and s.seq == 1


def test_oversize_limit_comes_from_settings() -> None:
    client = AgentClient(Settings(max_event_bytes=4096), "acme", "a", None, KEY, producer=MemorySink())
    assert client.max_event_bytes == 4096


@pytest.mark.parametrize("tenant", ["Acme", "", "a b", "x" * 64, "-lead", "acme.events"])
def test_bad_tenant_id_raises_before_anything(tenant: str) -> None:
    sink = MemorySink()
    with pytest.raises(TenantError):
        AgentClient(None, tenant, "agent", None, KEY, producer=sink)
    assert sink.count == 0


@pytest.mark.parametrize(("call", "needle"), [
    (lambda s: s.llm_call("gpt-4o", -1, 1, 0.1, 1.0), "prompt_tokens"),
    (lambda s: s.llm_call("", 1, 1, 0.1, 1.0), "model"),
    (lambda s: s.llm_call("m", 1, 1, float("inf"), 1.0), "cost_usd"),
    (lambda s: s.tool_result("t", "c", "maybe", 1.0), "status"),
    (lambda s: s.policy_decision("p", "perhaps"), "decision"),
    (lambda s: s.message("user", 42), "text"),
    (lambda s: s.custom(["not", "an", "object"]), "custom"),
    (lambda s: s.emit("no_such_type", {}), "type"),
    (lambda s: s.emit("custom", {}, attributes={"k": 1}), "attributes"),
])
def test_helper_argument_errors(call: Any, needle: str) -> None:
    sink = MemorySink()
    s = _client(sink).session("s")
    with pytest.raises(InvalidEvent) as err:
        call(s)
    assert err.value.reason == "bad_field" and needle in str(err.value)
    assert sink.count == 0 and s.seq == 0


def test_registered_key_id_is_used_and_client_attributes_merge() -> None:
    sink = MemorySink()
    client = AgentClient(None, "acme", "a", "registry-key-9", KEY, producer=sink, attributes={"env": "dev"})
    with client.session("s") as s:
        s.custom({}, attributes={"run": "1"})
    events = _sent(sink)
    assert {e.key_id for e in events} == {"registry-key-9"}
    assert events[1].attributes == {"env": "dev", "run": "1"} and events[0].attributes == {"env": "dev"}
    assert all(verify_envelope(e, KEY.public_key) for e in events)


def test_register_is_a_hook_for_the_control_plane() -> None:
    with pytest.raises(NotImplementedError):
        AgentClient.register()
