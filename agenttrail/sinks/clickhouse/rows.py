"""Pure mapping from Kafka records to ClickHouse rows (no I/O).

Hashes and signatures are stored as lowercase hex so analysts can read and compare them.
Typed columns are extracted from the payload per the conventions in docs/contracts.md; a payload
that is not a JSON object (or was erased) yields the typed defaults (empty string, 0).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any, Protocol

MICROS_PER_DAY = 86_400_000_000
MAX_DATETIME = 4_294_967_295  # DateTime('UTC') upper bound: what `lesson` rows (kept forever) get

EVENT_COLUMNS: tuple[str, ...] = (
    "tenant_id", "session_id", "chain_index", "event_id", "agent_id", "seq", "ts", "type",
    "payload", "payload_sha256", "attributes", "key_id", "signature", "prev_hash", "entry_hash",
    "seq_gap", "source_partition", "source_offset", "ledger_partition", "ledger_offset",
    "model", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "tool", "tool_status",
    "expires_at",
)  # fmt: skip

DLQ_COLUMNS: tuple[str, ...] = (
    "tenant_id", "dlq_partition", "dlq_offset", "ts", "reason", "detail", "tenant_topic",
    "source_partition", "source_offset", "original_b64",
)  # fmt: skip

CHECKPOINT_COLUMNS: tuple[str, ...] = (
    "tenant_id", "kafka_partition", "kafka_offset", "kafka_ts", "tree_size", "root_hash", "body",
    "raw_key", "raw_value",
)  # fmt: skip

KEPT_FOREVER = frozenset({"lesson"})


class EnvelopeLike(Protocol):
    event_id: str
    tenant_id: str
    agent_id: str
    session_id: str
    seq: int
    ts: int
    type: str
    payload: bytes
    payload_sha256: bytes
    attributes: dict[str, str]
    key_id: str
    signature: bytes


class LedgerLike(Protocol):
    envelope: EnvelopeLike
    chain_index: int
    prev_hash: bytes
    entry_hash: bytes
    seq_gap: bool
    source_partition: int
    source_offset: int


def _json_object(data: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, int(value))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def typed_fields(event_type: str, payload: bytes) -> tuple[str, int, int, float, float, str, str]:
    """(model, prompt_tokens, completion_tokens, cost_usd, latency_ms, tool, tool_status)."""
    if event_type not in ("llm_call", "tool_call", "tool_result"):
        return ("", 0, 0, 0.0, 0.0, "", "")
    body = _json_object(payload)
    if event_type == "llm_call":
        return (
            _text(body.get("model")),
            _count(body.get("prompt_tokens")),
            _count(body.get("completion_tokens")),
            _number(body.get("cost_usd")),
            _number(body.get("latency_ms")),
            "",
            "",
        )
    tool = _text(body.get("tool"))
    if event_type == "tool_call":
        return ("", 0, 0, 0.0, 0.0, tool, "")
    return ("", 0, 0, 0.0, _number(body.get("latency_ms")), tool, _text(body.get("status")))


def expires_at(event_type: str, ts_micros: int, retention_days: int) -> int:
    """Epoch seconds at which the row may go; `lesson` rows never expire."""
    if event_type in KEPT_FOREVER:
        return MAX_DATETIME
    return min(MAX_DATETIME, max(0, (ts_micros + retention_days * MICROS_PER_DAY) // 1_000_000))


def event_row(
    record: LedgerLike, ledger_partition: int, ledger_offset: int, retention_days: int
) -> tuple[Any, ...]:
    """One `events` row, in EVENT_COLUMNS order."""
    env = record.envelope
    return (
        env.tenant_id,
        env.session_id,
        record.chain_index,
        env.event_id,
        env.agent_id,
        env.seq,
        env.ts,  # DateTime64(6) takes integer microseconds as is
        env.type,
        env.payload.decode("utf-8", errors="replace"),
        env.payload_sha256.hex(),
        dict(env.attributes),
        env.key_id,
        env.signature.hex(),
        record.prev_hash.hex(),
        record.entry_hash.hex(),
        1 if record.seq_gap else 0,
        record.source_partition,
        record.source_offset,
        ledger_partition,
        ledger_offset,
        *typed_fields(env.type, env.payload),
        expires_at(env.type, env.ts, retention_days),
    )


def _decode_key(key: bytes | None) -> str:
    return key.decode("utf-8", errors="replace") if key else ""


def _micros(value: object) -> int:
    """A DLQ `ts`: epoch micros (int) or ms/seconds by magnitude; anything else is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    magnitude = abs(value)
    if magnitude < 1e11:  # seconds
        return int(value * 1_000_000)
    if magnitude < 1e14:  # milliseconds
        return int(value * 1_000)
    return int(value)


def _tenant_of_topic(topic: str) -> str:
    parts = topic.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "agenttrail" else ""


def dlq_row(key: bytes | None, value: bytes | None, partition: int, offset: int) -> tuple[Any, ...]:
    """One `dlq` row from a dead letter (JSON per docs/contracts.md); unreadable JSON is kept raw."""
    body: Mapping[str, Any] = _json_object(value or b"")
    tenant_topic = _text(body.get("tenant_topic"))
    tenant = _decode_key(key) or _tenant_of_topic(tenant_topic)
    original = _text(body.get("original_b64"))
    if not body and value:
        original = base64.b64encode(value).decode()
    return (
        tenant,
        partition,
        offset,
        _micros(body.get("ts")),
        _text(body.get("reason")) or ("unreadable" if not body else ""),
        _text(body.get("detail")),
        tenant_topic,
        int(body["partition"]) if isinstance(body.get("partition"), int) else -1,
        int(body["offset"]) if isinstance(body.get("offset"), int) else -1,
        original,
    )


def checkpoint_row(
    key: bytes | None, value: bytes | None, partition: int, offset: int, timestamp_ms: int
) -> tuple[Any, ...]:
    """One `checkpoints` row: raw bytes kept; tenant, tree size and root extracted when present."""
    raw = value or b""
    body = _json_object(raw)
    tenant = _decode_key(key) or _text(body.get("tenant_id")) or _text(body.get("tenant"))
    root = body.get("root_hash", body.get("root", ""))
    return (
        tenant,
        partition,
        offset,
        max(0, timestamp_ms),
        _count(body.get("tree_size")),
        _text(root),
        json.dumps(body, sort_keys=True) if body else "",
        (key or b"").hex(),
        raw.hex(),
    )
