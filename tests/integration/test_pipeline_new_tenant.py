"""A tenant created while the worker runs is picked up by the pattern subscription without a restart."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from pipeline_support import chains_of, ledger_records, read_all, start_worker, stop_worker

from agenttrail.config import Settings
from agenttrail.control.provision import provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import ledger_topic
from agenttrail.producers.client import AgentClient

BOUND_S = 60.0  # generous; the measured time is printed


def test_tenant_created_while_the_worker_runs_is_chained_within_seconds(
        kafka_settings: Settings, registry: Registry, tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    old = f"old-{uuid.uuid4().hex[:6]}"
    provision_tenant(registry, old, 1)
    worker = start_worker(bootstrap, tmp_path / "home", "newtenant", "--no-checkpoints")
    try:
        # the worker is up and chaining before the new tenant exists
        (agent,) = provision_tenant(registry, old, 1)
        with AgentClient(bootstrap, old, agent.agent_id, agent.key_id, agent.key) as client:
            client.send("warmup", 0, "message", {"text": "hello"})
        assert len(read_all(bootstrap, [ledger_topic(old)], expect=1, timeout=90)) == 1

        new = f"new-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        agents = provision_tenant(registry, new, 2)
        provisioned = time.monotonic() - t0
        sent = []
        t1 = time.monotonic()
        for i, a in enumerate(agents):
            with AgentClient(bootstrap, new, a.agent_id, a.key_id, a.key) as client:
                sent += [client.send(f"fresh-{i}", seq, "message", {"seq": seq}).event_id for seq in range(5)]
        rows = read_all(bootstrap, [ledger_topic(new)], expect=len(sent), timeout=BOUND_S)
        chained_after = time.monotonic() - t1
        alive = worker.poll()
    finally:
        stop_worker(worker)
    print(f"\nnew tenant: provisioned in {provisioned:.1f}s, first events chained {chained_after:.1f}s after sending")
    assert alive is None
    chains = chains_of(ledger_records(rows))
    assert sorted(r.envelope.event_id for c in chains.values() for r in c) == sorted(sent)
    assert chained_after < BOUND_S
