from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.errors import AgentTrailError, InvalidEvent
from agenttrail.processors.dlq import REASONS, DlqRecord, InvalidDeadLetter

CONTRACTS = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"


def record(**changes: object) -> DlqRecord:
    fields: dict[str, object] = {
        "reason": "bad_signature",
        "detail": "bad_signature: signature does not verify",
        "tenant_topic": "agenttrail.acme.events",
        "partition": 3,
        "offset": 1234,
        "ts": 1_700_000_000_000_000,
        "original": b"\x00\x01garbage\xff",
    }
    fields.update(changes)
    return DlqRecord(**fields)  # type: ignore[arg-type]


def test_reasons_match_the_documented_closed_list() -> None:
    text = CONTRACTS.read_text()
    section = text.split("Reason codes (closed list):", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    assert documented == REASONS


def test_json_layout_matches_contract() -> None:
    rec = record()
    obj = json.loads(rec.to_json())
    assert set(obj) == {"reason", "detail", "tenant_topic", "partition", "offset", "ts", "original_b64"}
    assert base64.b64decode(obj["original_b64"]) == rec.original
    assert obj["partition"] == 3 and obj["offset"] == 1234 and obj["reason"] == "bad_signature"


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_round_trip_every_reason(reason: str) -> None:
    rec = record(reason=reason)
    assert DlqRecord.from_json(rec.to_json()) == rec
    assert DlqRecord.from_json(rec.to_json().decode()) == rec


@given(st.binary(max_size=2048), st.text(max_size=200), st.integers(0, 2**31), st.integers(0, 2**62))
def test_property_round_trip_preserves_original_bytes(
    original: bytes, detail: str, partition: int, offset: int
) -> None:
    rec = record(original=original, detail=detail, partition=partition, offset=offset)
    assert DlqRecord.from_json(rec.to_json()) == rec


def test_unknown_reason_fails_closed() -> None:
    with pytest.raises(InvalidDeadLetter) as info:
        record(reason="something_new")
    assert isinstance(info.value, AgentTrailError) and isinstance(info.value, ValueError)
    with pytest.raises(InvalidDeadLetter):
        record(reason=["bad_signature"])
    data = json.loads(record().to_json())
    data["reason"] = "nope"
    with pytest.raises(InvalidDeadLetter):
        DlqRecord.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "changes",
    [
        {"partition": -1},
        {"offset": -2},
        {"ts": -1},
        {"partition": True},
        {"offset": 1.0},
        {"detail": None},
        {"tenant_topic": 5},
        {"original": "text"},
    ],
)
def test_bad_field_values_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidDeadLetter):
        record(**changes)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("detail"),
        lambda o: o.update(extra=1),
        lambda o: o.update(original_b64="!!not base64"),
        lambda o: o.update(original_b64=None),
        lambda o: o.update(partition="3"),
        lambda o: o.update(offset=None),
    ],
)
def test_strict_decode(mutate: object) -> None:
    obj = json.loads(record().to_json())
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(InvalidDeadLetter):
        DlqRecord.from_json(json.dumps(obj))


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1, 2]", b"null", b"{"])
def test_garbage_json(data: bytes) -> None:
    with pytest.raises(InvalidDeadLetter):
        DlqRecord.from_json(data)


def test_from_invalid_event_and_key() -> None:
    error = InvalidEvent("clock_skew", "ts is 900s in the future")
    rec = DlqRecord.from_invalid(error, "agenttrail.acme.events", 1, 42, b"raw", 99)
    assert rec.reason == "clock_skew"
    assert "900s in the future" in rec.detail
    assert (rec.tenant_topic, rec.partition, rec.offset, rec.ts, rec.original) == (
        "agenttrail.acme.events", 1, 42, 99, b"raw",
    )
    assert rec.tenant == "acme" and rec.key() == b"acme"
    assert DlqRecord.from_invalid(error, "agenttrail.acme.events", 0, 0, None, 1).original == b""
    chatty = InvalidEvent("malformed", "x" * 5000)
    long = DlqRecord.from_invalid(chatty, "agenttrail.acme.events", 0, 0, b"", 1)
    assert len(long.detail) == 1000
    other = record(tenant_topic="some.other.topic")
    assert other.tenant is None and other.key() is None
    with pytest.raises(InvalidDeadLetter):
        DlqRecord.from_invalid(InvalidEvent("made_up"), "agenttrail.acme.events", 0, 0, b"", 1)
