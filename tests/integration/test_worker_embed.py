"""The worker's Faust embed agent: text-bearing ledger records become embedding records."""

from __future__ import annotations

import uuid
from pathlib import Path

from pipeline_support import read_all, stop_worker, worker_overrides

from agenttrail.config import Settings
from agenttrail.control.provision import provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import EMBEDDINGS_TOPIC, ledger_topic
from agenttrail.processes import spawn_cli
from agenttrail.processors.embed import decode_embedding
from agenttrail.producers.client import AgentClient


def test_worker_embeds_text_bearing_events(kafka_settings: Settings, tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    tenant = f"embed-{uuid.uuid4().hex[:6]}"
    with Registry(kafka_settings, bootstrap).start() as registry:
        (agent,) = provision_tenant(registry, tenant, 1)
    client = AgentClient(bootstrap, tenant, agent.agent_id, agent.key_id, agent.key)
    texts = [f"the build {i} failed because the disk was full" for i in range(20)]
    with client.session() as session:
        for text in texts:
            session.message("assistant", text)
            session.tool_call("grep", {"pattern": "x"})  # not text-bearing
    assert client.close(30) == 0
    home = tmp_path / "home"
    proc = spawn_cli(["worker", "--name", f"e-{tenant}", "--no-checkpoints"],
                     worker_overrides(bootstrap, home, HF_HUB_OFFLINE="1"), home / "worker.log")
    try:
        ledger = read_all(bootstrap, [ledger_topic(tenant)], expect=2 + 2 * len(texts), timeout=120)
        assert len(ledger) == 2 + 2 * len(texts)
        rows = [r for r in read_all(bootstrap, [EMBEDDINGS_TOPIC], timeout=120, idle=8.0)
                if r[3] == tenant.encode()]
    finally:
        stop_worker(proc)
    records = [decode_embedding(v) for *_, v in rows]
    mine = {r.event_id: r for r in records if r.tenant_id == tenant}
    assert sorted(r.text for r in mine.values()) == sorted(texts)
    assert all(len(r.vector) == 384 for r in mine.values())
