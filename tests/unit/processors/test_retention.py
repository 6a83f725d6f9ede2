from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.config import Settings
from agenttrail.errors import AgentTrailError
from agenttrail.processors.chain import GENESIS, extend, verify_chain
from agenttrail.processors.checkpoint import verify_anchor
from agenttrail.processors.retention import (
    CHECKPOINTS,
    DAY_MICROS,
    DLQ,
    EMBEDDINGS,
    EVENTS,
    LEDGER,
    InvalidCommand,
    PurgeCommand,
    RetentionPolicy,
    cut_time,
    expired_sessions,
    is_expired,
    plan_purge,
    retention_ms,
    topic_retention_ms,
)
from agenttrail.processors.service_key import ServiceKey

NOW = 1_800_000_000_000_000
KEY = ServiceKey.from_seed(b"\x05" * 32)


def test_defaults_and_settings() -> None:
    policy = RetentionPolicy()
    assert policy.days == 90 and policy.keep_forever_types == frozenset({"lesson"})
    assert RetentionPolicy.from_settings(Settings(retention_days=7)).days == 7


@pytest.mark.parametrize("days", [0, -1, 1.5, "90", True])
def test_invalid_days(days: object) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(days=days)  # type: ignore[arg-type]


def test_cut_time_is_now_minus_days() -> None:
    assert cut_time(NOW, RetentionPolicy(days=1)) == NOW - 86_400 * 1_000_000
    assert cut_time(NOW, RetentionPolicy(days=90)) == NOW - 90 * DAY_MICROS


def test_exactly_at_the_cut_is_kept_one_micro_before_expires() -> None:
    policy = RetentionPolicy(days=30)
    cut = cut_time(NOW, policy)
    assert not is_expired(policy, cut, NOW, "message")
    assert is_expired(policy, cut - 1, NOW, "message")
    assert not is_expired(policy, cut + 1, NOW, "message")
    assert not is_expired(policy, NOW + 10, NOW, "message")  # future events are not expired


def test_lessons_never_expire_but_other_types_do() -> None:
    policy = RetentionPolicy(days=1)
    ancient = 0
    assert not is_expired(policy, ancient, NOW, "lesson")
    for event_type in ("message", "llm_call", "tool_call", "error", "custom"):
        assert is_expired(policy, ancient, NOW, event_type)
    custom = RetentionPolicy(days=1, keep_forever_types=frozenset({"lesson", "policy_decision"}))
    assert not is_expired(custom, ancient, NOW, "policy_decision")
    nothing_kept = RetentionPolicy(days=1, keep_forever_types=frozenset())
    assert is_expired(nothing_kept, ancient, NOW, "lesson")


@given(st.integers(1, 3650), st.integers(0, 2**62), st.integers(-(2**40), 2**40))
def test_property_is_expired_iff_strictly_before_cut(days: int, now: int, delta: int) -> None:
    policy = RetentionPolicy(days=days)
    ts = cut_time(now, policy) + delta
    assert is_expired(policy, ts, now, "message") is (delta < 0)
    assert is_expired(policy, ts, now, "lesson") is False


def test_topic_retention() -> None:
    policy = RetentionPolicy(days=90)
    assert retention_ms(policy) == 90 * 86_400_000
    assert topic_retention_ms(policy, EVENTS) == retention_ms(policy)
    assert topic_retention_ms(policy, LEDGER) == retention_ms(policy)
    assert topic_retention_ms(policy, EMBEDDINGS) == retention_ms(policy)
    assert topic_retention_ms(policy, DLQ) == retention_ms(policy)
    assert topic_retention_ms(policy, CHECKPOINTS) == -1
    with pytest.raises(ValueError):
        topic_retention_ms(policy, "registry")
    assert retention_ms(RetentionPolicy(days=1)) == 86_400_000


# -- purge commands -------------------------------------------------------------------------------
def test_purge_command_json_round_trip() -> None:
    for cmd in (
        PurgeCommand("acme", NOW),
        PurgeCommand("acme", NOW, ("lesson", "custom"), ("s-1", "s 2", "é"), b"\x01" * 32),
        PurgeCommand("acme", -5, (), ()),
    ):
        data = cmd.to_json()
        obj = json.loads(data)
        assert obj["kind"] == "purge" and obj["tenant_id"] == "acme"
        back = PurgeCommand.from_json(data)
        assert back.tenant_id == cmd.tenant_id and back.before_ts_micros == cmd.before_ts_micros
        assert sorted(back.keep_types) == sorted(cmd.keep_types)
        assert back.session_ids == cmd.session_ids and back.anchor_hash == cmd.anchor_hash
        assert back.before_ts == cmd.before_ts_micros
        assert PurgeCommand.from_json(data.decode()).to_json() == data


def test_purge_command_none_sessions_differs_from_empty() -> None:
    everything = json.loads(PurgeCommand("acme", NOW).to_json())
    nothing = json.loads(PurgeCommand("acme", NOW, session_ids=()).to_json())
    assert everything["session_ids"] is None and nothing["session_ids"] == []


def _cmd_obj(**changes: object) -> bytes:
    obj = json.loads(PurgeCommand("acme", NOW, session_ids=("s",), anchor_hash=b"\x02" * 32).to_json())
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff",
        b"[]",
        _cmd_obj(kind="anchor"),
        _cmd_obj(tenant_id="Bad Tenant"),
        _cmd_obj(tenant_id=7),
        _cmd_obj(before_ts_micros="123"),
        _cmd_obj(before_ts_micros=1.5),
        _cmd_obj(keep_types="lesson"),
        _cmd_obj(keep_types=[1]),
        _cmd_obj(keep_types=[""]),
        _cmd_obj(session_ids="s"),
        _cmd_obj(session_ids=[None]),
        _cmd_obj(anchor_hash="!!"),
        _cmd_obj(anchor_hash="AAAA"),  # 3 bytes
        _cmd_obj(anchor_hash=5),
        _cmd_obj(extra=1),
    ],
)
def test_purge_command_strict_decode(data: bytes) -> None:
    with pytest.raises(InvalidCommand) as info:
        PurgeCommand.from_json(data)
    assert isinstance(info.value, AgentTrailError) and isinstance(info.value, ValueError)


def test_purge_command_missing_key() -> None:
    obj = json.loads(_cmd_obj())
    del obj["session_ids"]
    with pytest.raises(InvalidCommand):
        PurgeCommand.from_json(json.dumps(obj))


# -- planning: whole expired sessions -------------------------------------------------------------
def _session(n: int, tag: str) -> tuple[tuple[int, bytes], list[tuple[int, bytes, bytes, bytes]]]:
    state, records = GENESIS, []
    for i in range(n):
        index, prev, digest, state = extend(state, f"{tag}-{i}".encode())
        records.append((index, prev, digest, f"{tag}-{i}".encode()))
    return (state.index, state.head), records


def test_expired_sessions() -> None:
    cut = NOW - DAY_MICROS
    last = {"old": cut - 1, "at-cut": cut, "new": NOW, "older": 0}
    assert expired_sessions(last, cut) == ["old", "older"]
    assert expired_sessions(last, cut, already_purged={"older"}) == ["old"]
    assert expired_sessions({}, cut) == []


def test_plan_purge_anchors_only_whole_expired_sessions() -> None:
    policy = RetentionPolicy(days=30)
    cut = cut_time(NOW, policy)
    old_head, old_records = _session(5, "old")
    live_head, _ = _session(3, "live")
    heads = {"old": old_head, "live": live_head, "gone": (2, b"\x03" * 32)}
    last_ts = {"old": cut - 1, "live": cut, "gone": 0, "unknown": 0}
    planned = plan_purge("acme", policy, NOW, heads, last_ts, None, KEY, already_purged={"gone"})
    assert planned is not None
    anchor, command = planned
    assert [sid for sid, _, _ in anchor.heads] == ["old"]  # not live (at the cut), not gone, not unknown
    assert anchor.cut == cut and anchor.time == NOW and anchor.tenant == "acme"
    verify_anchor(anchor, [KEY.verifier])
    assert command == PurgeCommand("acme", cut, ("lesson",), ("old",), anchor.hash)
    # the anchored head proves the purged chain, and a resumed session continues from it
    assert verify_chain(old_records, expected_head=anchor.heads_map()["old"]).ok
    resumed = extend(anchor.heads_map()["old"], b"late")
    assert verify_chain([(resumed[0], resumed[1], resumed[2], b"late")], anchor=anchor.heads_map()["old"]).ok


def test_plan_purge_nothing_expired_and_chaining() -> None:
    policy = RetentionPolicy(days=30)
    head, _ = _session(2, "s")
    assert plan_purge("acme", policy, NOW, {"s": head}, {"s": NOW}, None, KEY) is None
    first = plan_purge("acme", policy, NOW, {"s": head}, {"s": 0}, None, KEY)
    assert first is not None
    second = plan_purge("acme", policy, NOW + 1, {"t": head}, {"t": 0}, first[0].hash, KEY)
    assert second is not None
    verify_anchor(second[0], [KEY.verifier], previous=first[0])
    assert second[1].anchor_hash == second[0].hash != first[0].hash
