"""Audit on the real broker: pipeline worker -> ledger -> `agenttrail audit verify` exits 0; a forged
record produced into the ledger topic makes it exit 1, located exactly; export -> verify-bundle."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

from audit_support import produce, run_cli, wait_for_pipeline
from confluent_kafka import Producer
from pipeline_support import ledger_records, read_all, start_worker, stop_worker

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control.provision import provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.clients import producer_config
from agenttrail.kafka.topics import ledger_topic
from agenttrail.processors.chain import ChainState, extend
from agenttrail.schemas.envelope import signing_bytes
from agenttrail.schemas.ledger import LedgerRecord, encode_ledger

EVENTS = 1_000



def test_pipeline_then_audit_then_forgery(kafka_settings: Settings, registry: Registry, tmp_path: Path) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    tenant = f"audit-{uuid.uuid4().hex[:6]}"
    agents = provision_tenant(registry, tenant, 2)
    produce(bootstrap, agents, sessions=8, events=EVENTS)
    home = tmp_path / "home"
    worker = start_worker(bootstrap, home)
    try:
        wait_for_pipeline(bootstrap, tenant, EVENTS)
    finally:
        stop_worker(worker)

    clean = run_cli(bootstrap, home, "audit", "verify", "--tenant", tenant, "--no-compare", "--json", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert (report["ok"], report["events"], report["sessions"], report["signatures_checked"]) == \
        (True, EVENTS, 8, EVENTS)
    assert report["checkpoints_checked"] >= 1

    # export one session and verify the bundle offline, pinned to the worker's service key
    bundle = tmp_path / "bundle.json"
    exported = run_cli(bootstrap, home, "audit", "export", "--tenant", tenant, "--session", "s-003",
                       "--out", str(bundle), "--json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    vkey = json.loads(exported.stdout)["service_key"]
    checked = run_cli(bootstrap, home, "audit", "verify-bundle", str(bundle), "--service-key", vkey, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["events"] == EVENTS // 8

    # forge: the next record of s-005, well chained, signed by a key the registry never saw
    records = ledger_records(read_all(bootstrap, [ledger_topic(tenant)]))
    last = max((r for r in records if r.envelope.session_id == "s-005"), key=lambda r: r.chain_index)
    forger = crypto.SigningKey.generate()
    env = replace(last.envelope, event_id=str(uuid.uuid4()), seq=last.envelope.seq + 1, ts=last.envelope.ts + 1)
    env = replace(env, signature=forger.sign(signing_bytes(env)))
    index, prev, entry, _ = extend(ChainState(last.chain_index + 1, last.entry_hash), signing_bytes(env))
    forged = LedgerRecord(env, index, prev, entry, False, last.source_partition, last.source_offset + 1)
    producer = Producer(producer_config(bootstrap))
    producer.produce(ledger_topic(tenant), key=b"s-005", value=encode_ledger(forged))
    assert producer.flush(30) == 0

    caught = run_cli(bootstrap, home, "audit", "verify", "--tenant", tenant, "--no-compare", "--json")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    failures = json.loads(caught.stdout)["failures"]
    located = {(f["check"], f["tenant_id"], f["session_id"], f["chain_index"]) for f in failures}
    assert ("signature", tenant, "s-005", index) in located
    assert {f["session_id"] for f in failures if f["session_id"]} == {"s-005"}
