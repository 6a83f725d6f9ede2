"""kill -9 of chain workers mid-stream, restarts under the same name and a second worker joining:
0 lost, 0 forks, every chain verifies."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from corpus_support import committed_count
from pipeline_support import chains_of, ledger_records, read_all, start_worker, stop_worker, wait_until

from agenttrail.config import Settings
from agenttrail.control.provision import ProvisionedAgent, provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import ledger_topic
from agenttrail.producers.client import AgentClient

logger = logging.getLogger(__name__)

EVENTS = 20_000
SESSIONS = 40
RATE = 800  # events/s: the stream is still flowing while the workers are killed


def produce_steadily(bootstrap: str, agents: list[ProvisionedAgent], sent: dict[str, str],
                     done: threading.Event) -> None:
    clients = [AgentClient(bootstrap, a.tenant_id, a.agent_id, a.key_id, a.key) for a in agents]
    seqs = [0] * SESSIONS
    start = time.monotonic()
    try:
        for i in range(EVENTS):
            s = i % SESSIONS
            env = clients[s % len(clients)].send(f"crash-s{s}", seqs[s], "tool_call",
                                                 {"tool": "search", "i": i})
            seqs[s] += 1
            sent[env.event_id] = env.session_id
            ahead = i / RATE - (time.monotonic() - start)
            if ahead > 0.05:
                time.sleep(ahead)
        for client in clients:
            assert client.close(60) == 0
    finally:
        done.set()


def test_kill_9_mid_stream_loses_nothing_and_forks_nothing(kafka_settings: Settings, registry: Registry,
                                                            tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    tenant = f"crash-{uuid.uuid4().hex[:6]}"
    agents = provision_tenant(registry, tenant, 4)
    ledger = [ledger_topic(tenant)]
    home = tmp_path / "home"
    sent: dict[str, str] = {}
    produced = threading.Event()
    producer = threading.Thread(target=produce_steadily, args=(bootstrap, agents, sent, produced), daemon=True)
    t0 = time.monotonic()
    producer.start()

    def progressed(by: int) -> bool:
        base = committed_count(bootstrap, ledger)
        return wait_until(lambda: committed_count(bootstrap, ledger) >= base + by, timeout=90, interval=0.3)

    kills: list[tuple[float, int]] = []

    def kill(proc: object) -> None:
        stop_worker(proc, kill=True)  # type: ignore[arg-type]
        kills.append((round(time.monotonic() - t0, 1), committed_count(bootstrap, ledger)))

    w0 = start_worker(bootstrap, home, "crash0", "--no-checkpoints")
    w1 = None
    try:
        assert progressed(500), "the first worker never chained anything"
        kill(w0)  # 1: while chaining
        w0 = start_worker(bootstrap, home, "crash0", "--no-checkpoints")
        time.sleep(3)
        kill(w0)  # 2: the new incarnation, while it rejoins / rebuilds from the ledger
        w0 = start_worker(bootstrap, home, "crash0", "--no-checkpoints")
        w1 = start_worker(bootstrap, home, "crash1", "--no-checkpoints")  # a second worker joins
        assert progressed(300), "no progress after the restarts"
        kill(w0)  # 3: while both chain
        w0 = start_worker(bootstrap, home, "crash0", "--no-checkpoints")
        assert produced.wait(120)
        rows = read_all(bootstrap, ledger, expect=EVENTS, timeout=180)
        alive = (w0.poll(), w1.poll())
    finally:
        stop_worker(w0)
        if w1 is not None:
            stop_worker(w1)
    elapsed = time.monotonic() - t0
    records = ledger_records(rows)
    chains = chains_of(records)  # no two different records share (tenant, session, chain_index)
    chained = [r.envelope.event_id for c in chains.values() for r in c]
    print(f"\ncrash test: kills at (s, ledger offsets) {kills}; {len(records)} ledger records read, "
          f"{len(chained)} after dedupe, {elapsed:.0f}s")
    assert alive == (None, None)
    assert len(sent) == EVENTS
    assert len(chained) == len(set(chained)), "an event was chained twice (at two indexes)"
    assert set(chained) == set(sent), f"lost {len(set(sent) - set(chained))} events"
    for (t, session), chain in chains.items():
        assert t == tenant
        assert [r.envelope.seq for r in chain] == list(range(len(chain))), session
        assert not any(r.seq_gap for r in chain)
