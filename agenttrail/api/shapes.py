"""Pure mapping from stored rows to the JSON the API returns (no I/O, no SQL)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from agenttrail.errors import VerificationError
from agenttrail.processors.checkpoint import parse_note


def iso(ts_micros: int) -> str:
    return datetime.fromtimestamp(ts_micros / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_json(text: str) -> Any:
    """The stored payload parsed; None when erased or unreadable."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def event(row: dict[str, Any]) -> dict[str, Any]:
    ts = int(row["ts_us"])
    return {
        "event_id": row["event_id"], "session_id": row["session_id"],
        "chain_index": int(row["chain_index"]), "agent_id": row["agent_id"], "seq": int(row["seq"]),
        "ts": ts, "time": iso(ts), "type": row["type"], "payload": payload_json(row["payload"]),
        "payload_sha256": row["payload_sha256"], "attributes": dict(row["attributes"]),
        "key_id": row["key_id"], "signature": row["signature"], "prev_hash": row["prev_hash"],
        "entry_hash": row["entry_hash"], "seq_gap": bool(row["seq_gap"]),
        "model": row["model"] or None, "tool": row["tool"] or None,
    }


def event_summary(row: dict[str, Any]) -> dict[str, Any]:
    """An event as listings show it: no hashes or signature (see repository.SUMMARY_COLUMNS)."""
    ts = int(row["ts_us"])
    return {
        "event_id": row["event_id"], "session_id": row["session_id"],
        "chain_index": int(row["chain_index"]), "agent_id": row["agent_id"], "seq": int(row["seq"]),
        "ts": ts, "time": iso(ts), "type": row["type"], "payload": payload_json(row["payload"]),
        "attributes": dict(row["attributes"]), "model": row["model"] or None, "tool": row["tool"] or None,
    }


def session(row: dict[str, Any]) -> dict[str, Any]:
    started, last = int(row["started_us"]), int(row["last_us"])
    out = {
        "session_id": row["session_id"], "agent_id": row["agent_id"], "started_at": iso(started),
        "last_at": iso(last), "started_ts": started, "last_ts": last, "events": int(row["events"]),
        "head_index": int(row["head_index"]), "head_hash": row["head_hash"],
        "llm_calls": int(row["llm_calls"]), "tool_calls": int(row["tool_calls"]),
        "errors": int(row["errors"]), "ended": bool(row["ended"]),
    }
    for extra in ("prompt_tokens", "completion_tokens", "seq_gaps"):
        if extra in row:
            out[extra] = int(row[extra])
    if "cost_usd" in row:
        out["cost_usd"] = float(row["cost_usd"])
    return out


def lesson(row: dict[str, Any]) -> dict[str, Any]:
    body = payload_json(row["payload"])
    body = body if isinstance(body, dict) else {}
    ts = int(row["ts_us"])
    text = body.get("text")
    category = body.get("category")
    return {
        "event_id": row["event_id"], "session_id": row["session_id"], "agent_id": row["agent_id"],
        "ts": ts, "time": iso(ts), "text": text if isinstance(text, str) else None,
        "category": category if isinstance(category, str) else None,
    }


def dead_letter(row: dict[str, Any], with_original: bool) -> dict[str, Any]:
    ts = int(row["ts_us"])
    original = row["original_b64"]
    out = {
        "partition": int(row["dlq_partition"]), "offset": int(row["dlq_offset"]), "ts": ts,
        "time": iso(ts), "reason": row["reason"], "detail": row["detail"],
        "tenant_topic": row["tenant_topic"], "source_partition": int(row["source_partition"]),
        "source_offset": int(row["source_offset"]), "original_bytes": len(original) * 3 // 4,
    }
    if with_original:
        out["original_b64"] = original
    return out


def checkpoint(row: dict[str, Any]) -> dict[str, Any]:
    raw = bytes.fromhex(row["raw_value"]) if row["raw_value"] else b""
    text = raw.decode("utf-8", errors="replace")
    out: dict[str, Any] = {
        "partition": int(row["kafka_partition"]), "offset": int(row["kafka_offset"]),
        "kafka_ts_ms": int(row["kafka_ts_ms"]), "note": text, "kind": None, "tree_size": None,
        "root_hash": None, "time": None,
    }
    try:
        note = parse_note(raw)
    except (VerificationError, ValueError):
        return out
    out.update(kind=note.kind, tree_size=note.size, root_hash=note.root.hex(), time=note.time)
    return out


def b64_public_key(text: object) -> bytes:
    """A public key given as base64 (standard or url-safe); ValueError when it is not."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    padded = text + "=" * (-len(text) % 4)
    alt = padded.replace("-", "+").replace("_", "/")
    return base64.b64decode(alt, validate=True)
