"""The processors on the real broker: every event chained exactly once, chains and checkpoints verify."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from pathlib import Path

from pipeline_support import chains_of, ledger_records, read_all, start_worker, stop_worker, wait_until

from agenttrail.config import Settings
from agenttrail.control.provision import ProvisionedAgent, provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, ledger_topic
from agenttrail.processors.checkpoint import parse_note, verify_checkpoint
from agenttrail.processors.service_key import NoteVerifier
from agenttrail.producers.client import AgentClient


def produce_mix(bootstrap: str, agents: list[ProvisionedAgent], sessions: int, events: int,
                seed: int = 7) -> dict[tuple[str, str], list[str]]:
    """``events`` events over ``sessions`` sessions spread over the agents; returns event ids by session."""
    rng = random.Random(seed)
    clients = {a.agent_id: AgentClient(bootstrap, a.tenant_id, a.agent_id, a.key_id, a.key) for a in agents}
    plan = [(agents[i % len(agents)], f"s-{uuid.uuid4().hex[:10]}") for i in range(sessions)]
    seqs: dict[str, int] = defaultdict(int)
    sent: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _ in range(events):
        agent, session = plan[rng.randrange(sessions)]
        seq = seqs[session]
        seqs[session] += 1
        env = clients[agent.agent_id].send(session, seq, "message", {"role": "assistant", "text": f"m{seq}"})
        sent[(agent.tenant_id, session)].append(env.event_id)
    for client in clients.values():
        assert client.close(30) == 0
    return sent



def test_10k_events_50_sessions_3_tenants(kafka_settings: Settings, registry: Registry, tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    tag = uuid.uuid4().hex[:6]
    tenants = [f"pipe-{tag}-{i}" for i in range(3)]
    agents = [a for t in tenants for a in provision_tenant(registry, t, 2)]
    sent = produce_mix(bootstrap, agents, sessions=50, events=10_000)
    per_tenant = {t: sum(len(ids) for (tt, _), ids in sent.items() if tt == t) for t in tenants}
    worker = start_worker(bootstrap, tmp_path / "home")
    try:
        rows = read_all(bootstrap, [ledger_topic(t) for t in tenants], expect=10_000, timeout=240)

        def covered() -> bool:  # the checkpointer (1 s interval) has signed every chained event
            notes = [parse_note(v) for *_, k, v in read_all(bootstrap, [CHECKPOINTS_TOPIC], idle=0.5)
                     if k is not None and k.decode() in tenants]
            return all(any(n.kind == "checkpoint" and n.tenant == t and n.events == per_tenant[t] for n in notes)
                       for t in tenants)

        assert wait_until(covered, timeout=90, interval=1.0), "no checkpoint covers every chained event"
    finally:
        stop_worker(worker)
    records = ledger_records(rows)
    assert len(records) == 10_000
    chains = chains_of(records)
    assert {k: [r.envelope.event_id for r in c] for k, c in chains.items()} == dict(sent)
    assert not any(r.seq_gap for r in records)

    # checkpoints: signed by the service key published in the registry, roots over the session heads
    registry.sync()
    keys = [NoteVerifier.from_public_key(k.service, k.public_key) for k in registry_service_keys(registry)]
    notes = [parse_note(v) for t, _, _, k, v in read_all(bootstrap, [CHECKPOINTS_TOPIC])
             if k is not None and k.decode() in tenants]
    assert notes, "no checkpoint was written"
    for tenant in tenants:
        heads = {s: (len(c), c[-1].entry_hash) for (t, s), c in chains.items() if t == tenant}
        mine = [n for n in notes if n.kind == "checkpoint" and n.tenant == tenant]
        assert mine
        previous = None
        for note in mine:
            verify_checkpoint(note, keys, previous=previous)
            previous = note
        final = [n for n in mine if n.events == 10_000 or n.events == sum(h[0] for h in heads.values())]
        assert final, "a checkpoint covers every chained event"
        verify_checkpoint(final[-1], keys, expected_heads=heads)


def registry_service_keys(registry: Registry) -> list[object]:
    with registry.read() as view:
        return list(view.service_public_keys())


def test_events_topic_without_a_tenant_is_dead_lettered_and_harms_nothing(
        kafka_settings: Settings, registry: Registry, tmp_path: Path) -> None:
    """An events topic nobody registered (no ledger topic, no tenant): its events go to the DLQ as
    unknown_tenant; the worker survives and keeps chaining the real tenants."""
    from confluent_kafka import Producer

    from agenttrail.kafka.admin import TopicSpec, ensure_topics
    from agenttrail.kafka.clients import producer_config
    from agenttrail.kafka.topics import DLQ_TOPIC, events_topic
    from agenttrail.processors.dlq import DlqRecord

    bootstrap = kafka_settings.kafka_bootstrap or ""
    tag = uuid.uuid4().hex[:6]
    orphan, real = f"orphan-{tag}", f"real-{tag}"
    ensure_topics(bootstrap, [TopicSpec(events_topic(orphan), 4)])
    agents = provision_tenant(registry, real, 1)
    forged = AgentClient(bootstrap, orphan, agents[0].agent_id, agents[0].key_id, agents[0].key)
    for seq in range(5):
        forged.send("s-orphan", seq, "message", {"role": "user", "text": "who am I"})
    forged.close(30)
    producer = Producer(producer_config(bootstrap))
    producer.produce(events_topic(orphan), key=b"k", value=b"garbage")
    producer.flush(30)
    sent = produce_mix(bootstrap, agents, sessions=3, events=300)
    worker = start_worker(bootstrap, tmp_path / "home", f"orphan-{tag}", "--no-checkpoints")
    try:
        rows = read_all(bootstrap, [ledger_topic(real)], expect=300, timeout=120)
        assert wait_until(lambda: len([r for r in (DlqRecord.from_json(v) for *_, v in
                                                    read_all(bootstrap, [DLQ_TOPIC], idle=0.5))
                                       if r.tenant_topic == events_topic(orphan)]) >= 6, timeout=60)
        assert worker.poll() is None, "the worker survived"
    finally:
        stop_worker(worker)
    chains = chains_of(ledger_records(rows))
    assert {k: [r.envelope.event_id for r in c] for k, c in chains.items()} == dict(sent)
    letters = [r for r in (DlqRecord.from_json(v) for *_, v in read_all(bootstrap, [DLQ_TOPIC]))
               if r.tenant_topic == events_topic(orphan)]
    assert {r.reason for r in letters} == {"unknown_tenant", "malformed"}
