"""A restarted worker resumes from a chain-state snapshot instead of folding the whole ledger,
and the chains go on exactly as if it had folded everything: 0 lost, 0 forks, every chain verifies."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

from pipeline_support import chains_of, ledger_records, read_all, wait_until

from agenttrail.config import Settings
from agenttrail.control.provision import provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import CHAIN_SNAPSHOTS_TOPIC, events_topic, ledger_topic
from agenttrail.processes import spawn_cli, stop_process
from agenttrail.processors.chain import verify_chain
from agenttrail.processors.snapshot import latest_snapshots
from agenttrail.producers.client import AgentClient


def _send(bootstrap: str, agents: list, start: int, count: int, sessions: int = 12) -> None:  # type: ignore[type-arg]
    clients = [AgentClient(bootstrap, a.tenant_id, a.agent_id, a.key_id, a.key) for a in agents]
    try:
        for i in range(start, start + count):
            s = i % sessions
            clients[s % len(clients)].send(f"snap-s{s}", i // sessions, "message", {"text": f"m{i}"})
    finally:
        for c in clients:
            assert c.flush(60) == 0
            c.close(10)


def _worker(bootstrap: str, home: Path):  # type: ignore[no-untyped-def]
    env = {"AGENTTRAIL_KAFKA_BOOTSTRAP": bootstrap, "AGENTTRAIL_HOME": str(home),
           "AGENTTRAIL_CHAIN_SNAPSHOT_SECONDS": "1"}
    return spawn_cli(["worker", "--name", "snap0", "--no-embed", "--no-checkpoints"], env, home / "worker.log")


def test_restart_resumes_from_a_snapshot_and_chains_continue(kafka_settings: Settings, registry: Registry,
                                                              tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    tenant = f"snap-{uuid.uuid4().hex[:6]}"
    agents = provision_tenant(registry, tenant, 3)
    ledger = ledger_topic(tenant)
    home = tmp_path / "home"
    worker = _worker(bootstrap, home)
    try:
        _send(bootstrap, agents, 0, 1500)
        assert wait_until(lambda: len(read_all(bootstrap, [ledger], expect=1500, timeout=60)) >= 1500, 120)
        _send(bootstrap, agents, 1500, 300)  # commits after the first snapshot's interval: a second one
        assert wait_until(lambda: len(read_all(bootstrap, [ledger], expect=1800, timeout=60)) >= 1800, 120)
        snaps: dict = {}

        def snapshotted() -> bool:  # a snapshot is written right after its commit: it may trail the ledger
            snaps.clear()
            snaps.update(latest_snapshots((k, v) for _, _, _, k, v in read_all(bootstrap, [CHAIN_SNAPSHOTS_TOPIC])))
            return any(key[0] == events_topic(tenant) for key in snaps)

        wait_until(snapshotted, 30)
        ours = {key: s for key, s in snaps.items() if key[0] == events_topic(tenant)}
        assert ours and all(s.ledger_offset > 0 for s in ours.values()), snaps.keys()
        stop_process(worker, 30, sig=signal.SIGKILL)  # kill -9
        _send(bootstrap, agents, 1800, 1200)  # produced while no worker runs
        worker = _worker(bootstrap, home)
        rows = read_all(bootstrap, [ledger], expect=3000, timeout=180)
    finally:
        stop_process(worker, 30)
    stats = json.loads((home / "run" / "worker-snap0.json").read_text())  # the restarted process's counters
    assert stats.get("agenttrail_chain_partitions_restored_total", 0) >= 1, stats
    assert stats.get("agenttrail_chain_ledger_records_folded_total", 0) < 1800, "the whole ledger was folded"
    records = ledger_records(rows)
    chains = chains_of(records)
    events = [r.envelope.event_id for chain in chains.values() for r in chain]
    assert len(events) == len(set(events)) == 3000
    for chain in chains.values():
        entries = [(r.chain_index, r.prev_hash, r.entry_hash, _signing(r)) for r in chain]
        report = verify_chain(entries)
        assert report.ok, report.failure


def _signing(record):  # type: ignore[no-untyped-def]
    from agenttrail.schemas.envelope import signing_bytes

    return signing_bytes(record.envelope)
