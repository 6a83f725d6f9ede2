"""The agent SDK: ``AgentClient`` signs every event in the agent's process and hands it to Kafka.

    with AgentClient("127.0.0.1:9092", "acme", "agent-7", key_id, seed) as client:
        with client.session() as s:                      # session_start, seq 0
            s.llm_call("gpt-4o", 812, 96, 0.0031, 640.0)
            call = s.tool_call("search", {"q": "refund policy"})
            s.tool_result("search", call, "ok", 41.5)
                                                          # session_end on exit
Everything is checked before anything is sent: a payload JSON cannot carry, an event larger than
``Settings.max_event_bytes`` or a bad tenant id raises at the call site, and the session's ``seq``
does not move. One session is used from one thread at a time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agenttrail.config import Settings
from agenttrail.crypto import SigningKey, as_signing_key
from agenttrail.errors import ConfigError, InvalidEvent
from agenttrail.kafka.topics import events_topic, validate_tenant_id
from agenttrail.producers.producer import EventProducer, EventSink
from agenttrail.schemas.canonical import uuid7
from agenttrail.schemas.envelope import Envelope, build_envelope, encode_envelope

logger = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BYTES = Settings().max_event_bytes


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("bad_field", f"{name} must be a non-empty string, got {value!r}")
    return value


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEvent("bad_field", f"{name} must be an integer >= 0, got {value!r}")
    return value


def _number(name: str, value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise InvalidEvent("bad_field", f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidEvent("bad_field", f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


class AgentClient:
    """Signs and sends one agent's events for one tenant."""

    def __init__(self, settings_or_bootstrap: Settings | str | None, tenant_id: str, agent_id: str,
                 key_id: str | None, private_key: SigningKey | Ed25519PrivateKey | bytes, *,
                 producer: EventSink | None = None, spool_path: Path | None = None,
                 max_event_bytes: int | None = None, attributes: dict[str, str] | None = None) -> None:
        self.tenant_id = validate_tenant_id(tenant_id)
        self.agent_id = _text("agent_id", agent_id)
        key = as_signing_key(private_key)
        self.key = replace(key, key_id=key_id) if key_id else key
        self.topic = events_topic(self.tenant_id)
        self.attributes = dict(attributes or {})
        settings = settings_or_bootstrap if isinstance(settings_or_bootstrap, Settings) else None
        self.max_event_bytes = max_event_bytes or (settings.max_event_bytes if settings else
                                                   DEFAULT_MAX_EVENT_BYTES)
        self._owns_producer = producer is None
        if producer is None:
            bootstrap = self._bootstrap(settings_or_bootstrap)
            if spool_path is None and settings is not None:
                spool_path = settings.home / "spool" / f"{self.tenant_id}.{_safe(self.agent_id)}.spool"
            producer = EventProducer(bootstrap, spool_path=spool_path)
        self.producer = producer

    @staticmethod
    def _bootstrap(source: Settings | str | None) -> str:
        if isinstance(source, str) and source:
            return source
        if isinstance(source, Settings):
            from agenttrail.kafka.broker import resolve_bootstrap

            return resolve_bootstrap(source)
        raise ConfigError("AgentClient needs Settings, a bootstrap address or a producer")

    @classmethod
    def register(cls, *args: Any, **kwargs: Any) -> AgentClient:
        """Redeem a registration key and return a client for the new agent keypair.

        Hook for the control plane (agenttrail.control), which owns the registration flow.
        """
        raise NotImplementedError("agent registration is provided by agenttrail.control")

    # -- events ---------------------------------------------------------------------------------
    def build(self, session_id: str, seq: int, type: str, payload: Any,
              attributes: dict[str, str] | None = None) -> tuple[Envelope, bytes]:
        """Sign and encode one event; raises (bad_field, oversize) before anything is sent."""
        attrs = {**self.attributes, **attributes} if attributes else self.attributes
        if attrs and not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise InvalidEvent("bad_field", "attributes must map strings to strings")
        env = build_envelope(key=self.key, tenant_id=self.tenant_id, agent_id=self.agent_id,
                             session_id=session_id, seq=seq, type=type, payload=payload, attributes=attrs)
        data = encode_envelope(env)
        if len(data) > self.max_event_bytes:
            raise InvalidEvent("oversize", f"{type} event is {len(data)} bytes encoded; "
                               f"the limit is {self.max_event_bytes}")
        return env, data

    def send(self, session_id: str, seq: int, type: str, payload: Any,
             attributes: dict[str, str] | None = None) -> Envelope:
        env, data = self.build(session_id, seq, type, payload, attributes)
        self.producer.send(self.topic, session_id.encode("utf-8"), data)
        return env

    def session(self, session_id: str | None = None, *, start_seq: int = 0,
                start_payload: dict[str, Any] | None = None) -> Session:
        """A session context: session_start on enter, session_end on exit, ``seq`` from start_seq."""
        return Session(self, session_id or uuid7(), start_seq=start_seq, start_payload=start_payload)

    # -- lifecycle ------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> int:
        return self.producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush (and close the producer if this client made it); returns events left in the spool."""
        if self._owns_producer:
            return self.producer.close(timeout)
        return self.producer.flush(timeout)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:80]


class Session:
    """One agent session: numbers ``seq`` and offers a helper per event type."""

    def __init__(self, client: AgentClient, session_id: str, *, start_seq: int = 0,
                 start_payload: dict[str, Any] | None = None) -> None:
        self.client = client
        self.session_id = _text("session_id", session_id)
        self.seq = _count("start_seq", start_seq)
        self.start_payload = dict(start_payload or {})
        self.started = self.ended = False

    def emit(self, type: str, payload: Any, attributes: dict[str, str] | None = None) -> Envelope:
        """Sign and send one event with the next ``seq`` (which moves only if this succeeds)."""
        env = self.client.send(self.session_id, self.seq, type, payload, attributes)
        self.seq += 1
        return env

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Envelope:
        self.started = True
        return self.emit("session_start", {"agent_id": self.client.agent_id, **self.start_payload})

    def end(self, status: str = "ok", **extra: Any) -> Envelope:
        self.ended = True
        return self.emit("session_end", {"status": status, "events": self.seq, **extra})

    def __enter__(self) -> Session:
        if not self.started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.ended:
            return
        if exc_type is None:
            self.end()
        else:
            self.end("error", error=exc_type.__name__)

    # -- typed helpers (payload keys: docs/contracts.md) ---------------------------------------
    def llm_call(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float,
                 latency_ms: float, prompt: str | None = None, completion: str | None = None,
                 **extra: Any) -> Envelope:
        payload: dict[str, Any] = {
            **extra, "model": _text("model", model), "prompt_tokens": _count("prompt_tokens", prompt_tokens),
            "completion_tokens": _count("completion_tokens", completion_tokens),
            "cost_usd": _number("cost_usd", cost_usd), "latency_ms": _number("latency_ms", latency_ms),
        }
        if prompt is not None:
            payload["prompt"] = prompt
        if completion is not None:
            payload["completion"] = completion
        return self.emit("llm_call", payload)

    def tool_call(self, tool: str, args: Any = None, call_id: str | None = None) -> str:
        """Record a tool call; returns its call_id (pass it to ``tool_result``)."""
        cid = call_id or uuid7()
        self.emit("tool_call", {"tool": _text("tool", tool), "call_id": _text("call_id", cid),
                                "args": {} if args is None else args})
        return cid

    def tool_result(self, tool: str, call_id: str, status: str, latency_ms: float,
                    output: Any = None) -> Envelope:
        payload: dict[str, Any] = {
            "tool": _text("tool", tool), "call_id": _text("call_id", call_id),
            "status": _choice("status", status, ("ok", "error")),
            "latency_ms": _number("latency_ms", latency_ms),
        }
        if output is not None:
            payload["output"] = output
        return self.emit("tool_result", payload)

    def message(self, role: str, text: str) -> Envelope:
        return self.emit("message", {"role": _text("role", role), "text": _str_field("text", text)})

    def error(self, kind: str, message: str) -> Envelope:
        return self.emit("error", {"kind": _text("kind", kind), "message": _str_field("message", message)})

    def policy_decision(self, policy: str, decision: str, reason: str = "") -> Envelope:
        return self.emit("policy_decision", {"policy": _text("policy", policy),
                                             "decision": _choice("decision", decision, ("allow", "deny")),
                                             "reason": _str_field("reason", reason)})

    def lesson(self, text: str, category: str | None = None) -> Envelope:
        payload: dict[str, Any] = {"text": _text("text", text)}
        if category is not None:
            payload["category"] = _text("category", category)
        return self.emit("lesson", payload)

    def custom(self, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> Envelope:
        if not isinstance(payload, dict):
            raise InvalidEvent("bad_field", f"custom payload must be an object, not {type(payload).__name__}")
        return self.emit("custom", payload, attributes)


def _str_field(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidEvent("bad_field", f"{name} must be a string, got {type(value).__name__}")
    return value
