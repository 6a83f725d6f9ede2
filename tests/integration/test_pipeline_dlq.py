"""The bad-input corpus on the real broker: each input dead-lettered with its reason and source,
every valid event around it chained, and the worker still alive."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from corpus.build import build_corpus, poison_cases, valid_event
from corpus_support import RawProducer, provision_world, read_dlq
from pipeline_support import chains_of, ledger_records, read_all, start_worker, stop_worker

from agenttrail.config import Settings
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import events_topic, ledger_topic
from agenttrail.schemas.envelope import decode_envelope, encode_envelope

VALID_SESSIONS = 6
MAX_EVENT_BYTES = 100_000


def test_corpus_lands_in_the_dlq_and_valid_events_are_chained(kafka_settings: Settings, registry: Registry,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    # A small event limit keeps the oversize cases small (dead letters cut originals over 256 KiB,
    # which the byte-for-byte comparison below does not expect).
    monkeypatch.setenv("AGENTTRAIL_MAX_EVENT_BYTES", str(MAX_EVENT_BYTES))
    world = replace(provision_world(registry, uuid.uuid4().hex[:6]), max_event_bytes=MAX_EVENT_BYTES)
    corpus = build_corpus(world) + poison_cases(world)
    assert len(corpus) >= 30

    # valid sessions in tenants A and B, one event of them after every bad input
    owners = [world.agent if i % 3 else world.other for i in range(VALID_SESSIONS)]
    sessions = [(who, f"ok-{world.tag}-{i}") for i, who in enumerate(owners)]
    seqs: dict[str, int] = defaultdict(int)
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    producer = RawProducer(bootstrap)
    tickets: dict[str, int] = {}

    def send_valid(i: int) -> None:
        who, session = sessions[i % len(sessions)]
        env = valid_event(world, who, session, seqs[session])
        seqs[session] += 1
        producer.send(events_topic(who.tenant_id), session.encode(), encode_envelope(env))
        expected[(who.tenant_id, session)].append(env.event_id)

    for i, case in enumerate(corpus):
        send_valid(i)
        for key, value in case.before:
            producer.send(events_topic(case.topic_tenant), key, value)
            env = decode_envelope(value)
            expected[(env.tenant_id, env.session_id)].append(env.event_id)
        tickets[case.name] = producer.send(events_topic(case.topic_tenant), case.key, case.value)
    for i in range(len(corpus), len(corpus) + 2 * VALID_SESSIONS):
        send_valid(i)
    producer.flush()
    total_valid = sum(len(v) for v in expected.values())

    worker = start_worker(bootstrap, tmp_path / "home", "dlq", "--no-checkpoints")
    try:
        ledgers = [ledger_topic(world.tenant), ledger_topic(world.other.tenant_id)]
        rows = read_all(bootstrap, ledgers, expect=total_valid, timeout=120)
        sources = {events_topic(t) for t in (world.tenant, world.other.tenant_id, world.disabled.tenant_id)}
        dead = read_dlq(bootstrap, sources, expect=len(corpus), timeout=60)
        assert worker.poll() is None, "the worker died on the corpus"
    finally:
        stop_worker(worker)

    # every bad input: one dead letter, its reason, its source topic/partition/offset, its bytes
    by_source = {(d.tenant_topic, d.partition, d.offset): d for d in dead}
    assert len(by_source) == len(dead) == len(corpus), Counter(d.reason for d in dead)
    wrong = {}
    for case in corpus:
        partition, offset = producer.placed[tickets[case.name]]
        letter = by_source.get((events_topic(case.topic_tenant), partition, offset))
        if letter is None or letter.reason != case.reason or letter.original != (case.value or b""):
            wrong[case.name] = (case.reason, letter.reason if letter else None)
    assert not wrong, wrong

    # every valid event chained exactly once, in order, chains verifying from genesis
    records = ledger_records(rows)
    assert len(records) == total_valid
    chains = chains_of(records)
    assert {k: [r.envelope.event_id for r in c] for k, c in chains.items()} == dict(expected)
    assert all(c[0].chain_index == 0 for c in chains.values())
