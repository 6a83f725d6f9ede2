"""Helpers for the audit integration tests (producing events, waiting for the pipeline)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from pipeline_support import read_all, wait_until

from agenttrail.control.provision import ProvisionedAgent
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, ledger_topic
from agenttrail.processors.checkpoint import parse_note
from agenttrail.producers.client import AgentClient


def produce(bootstrap: str, agents: list[ProvisionedAgent], sessions: int, events: int) -> None:
    clients = {a.agent_id: AgentClient(bootstrap, a.tenant_id, a.agent_id, a.key_id, a.key) for a in agents}
    seqs: dict[str, int] = defaultdict(int)
    for i in range(events):
        agent = agents[i % sessions % len(agents)]
        session = f"s-{i % sessions:03d}"
        seq = seqs[session]
        seqs[session] += 1
        clients[agent.agent_id].send(session, seq, "message", {"role": "assistant", "text": f"m{i}"})
    for client in clients.values():
        assert client.close(30) == 0


def wait_for_pipeline(bootstrap: str, tenant: str, events: int, timeout: float = 180) -> None:
    """Until the ledger holds `events` records and a checkpoint covers all of them."""
    def covered() -> bool:
        notes = [parse_note(v) for _, _, _, k, v in read_all(bootstrap, [CHECKPOINTS_TOPIC], idle=0.5)
                 if k == tenant.encode()]
        return any(n.kind == "checkpoint" and n.events == events for n in notes)

    assert wait_until(lambda: len(read_all(bootstrap, [ledger_topic(tenant)], idle=0.5)) >= events, timeout)
    assert wait_until(covered, 60, interval=1.0), "no checkpoint covering every event"


def run_cli(bootstrap: str, home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update({"AGENTTRAIL_KAFKA_BOOTSTRAP": bootstrap, "AGENTTRAIL_HOME": str(home),
                "AGENTTRAIL_CLICKHOUSE_URL": f"chdb:///{home}/clickhouse"})
    return subprocess.run([sys.executable, "-m", "agenttrail.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=cwd)
