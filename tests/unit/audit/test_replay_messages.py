"""replay_messages verifies each batch's signatures at once and must answer exactly as the worker's
one-by-one reference (SessionTable.process), across batch boundaries and partitions."""

from __future__ import annotations

from corpus.build import _flip, valid_event, view_world

from agenttrail.audit import replay
from agenttrail.audit.replay import replay_messages
from agenttrail.processors.sequencer import Chained, SessionTable
from agenttrail.processors.verify import VerifyPolicy
from agenttrail.schemas.envelope import encode_envelope

NOW = 1_750_000_000 * 1_000_000
VIEW, WORLD = view_world(NOW)


def _one_by_one(messages: list[tuple[int, int, bytes, bytes, None]]) -> tuple[list[object], dict[str, int]]:
    tables: dict[int, SessionTable] = {}
    records, rejected = [], {}
    for partition, offset, key, value, _ in sorted(messages, key=lambda m: (m[0], m[1])):
        outcome = tables.setdefault(partition, SessionTable()).process(value, key, "corpus-a", partition, offset,
                                                                        VIEW, VerifyPolicy(), NOW)
        if isinstance(outcome, Chained):
            records.append(outcome.record)
        else:
            rejected[outcome.reason] = rejected.get(outcome.reason, 0) + 1
    return records, rejected


def test_replay_in_batches_answers_as_one_by_one(monkeypatch: object) -> None:
    monkeypatch.setattr(replay, "VERIFY_BATCH", 64)  # type: ignore[attr-defined]
    messages = []
    for i in range(300):
        session, seq = f"s{i % 7}", i // 7
        env = valid_event(WORLD, WORLD.agent, session, seq)
        if i in (5, 70, 199):
            env = _flip(env)  # a bad signature in three different batches
        value = encode_envelope(env)
        messages.append((i % 3, i, session.encode(), value, None))
        if i in (40, 250):
            messages.append((i % 3, 1000 + i, session.encode(), value, None))  # a redelivered duplicate
    records, rejected = _one_by_one(messages)
    got = replay_messages("corpus-a", reversed(messages), VIEW, VerifyPolicy(), NOW)
    assert got.records == records
    assert dict(got.rejected) == rejected == {"bad_signature": 3, "duplicate_seq": 2}
    assert len(records) == 297
