"""`audit replay` on the real broker: raw events re-verified and re-chained with the pipeline's code,
rebuilt into a fresh ClickHouse database, diffed with the live table: zero differences when clean,
exactly the tampered row otherwise."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from audit_support import produce, wait_for_pipeline
from pipeline_support import read_all, start_worker, stop_worker

from agenttrail.audit.replay import replay_tenant
from agenttrail.cli import main
from agenttrail.config import Settings
from agenttrail.control.provision import provision_tenant
from agenttrail.control.service import Registry
from agenttrail.kafka.topics import ledger_topic
from agenttrail.processors.chain_worker import policy_from
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.writer import ClickHouseSink

EVENTS = 600


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    """Run the CLI in this process (it shares this process's chDB engine) -> (exit code, JSON)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(capsys.readouterr().out)


def test_replay_clean_then_tampered(kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = kafka_settings.kafka_bootstrap or ""
    registry = Registry(kafka_settings, bootstrap).start()
    try:
        tenant = f"replay-{uuid.uuid4().hex[:6]}"
        produce(bootstrap, provision_tenant(registry, tenant, 2), sessions=6, events=EVENTS)
        worker = start_worker(bootstrap, tmp_path / "home")
        try:
            wait_for_pipeline(bootstrap, tenant, EVENTS)
        finally:
            stop_worker(worker)
        # the live projection, written by the ClickHouse sink from the ledger topic
        url = kafka_settings.clickhouse_url
        live = open_store(url)
        sink = ClickHouseSink(live, retention_days=36_500)
        for topic, partition, offset, key, value in read_all(bootstrap, [ledger_topic(tenant)]):
            sink.add(topic, partition, offset, key, value)
        sink.flush(force=True)
        registry.sync()
        with registry.read() as view:
            clean = replay_tenant(bootstrap, url, view, tenant, policy_from(kafka_settings), retention_days=36_500)
        assert clean.ok, clean.failures
        assert (clean.events, clean.sessions) == (EVENTS, 6)
        assert clean.rows_compared == 2 * EVENTS  # rebuilt vs live, replay vs ledger
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("AGENTTRAIL_KAFKA_BOOTSTRAP", bootstrap)
        monkeypatch.setenv("AGENTTRAIL_HOME", str(kafka_settings.home))
        monkeypatch.setenv("AGENTTRAIL_CLICKHOUSE_URL", url)
        code, report = cli(["audit", "verify", "--tenant", tenant, "--json"], capsys)  # ledger + compare
        assert (code, report["ok"], report["rows_compared"], report["events"]) == (0, True, EVENTS, EVENTS)

        live.command("ALTER TABLE events UPDATE payload = replaceOne(payload, 'm', 'M') "
                     "WHERE tenant_id = {t:String} AND session_id = 's-004' AND chain_index = 42 "
                     "SETTINGS mutations_sync = 1", {"t": tenant})
        with registry.read() as view:
            tampered = replay_tenant(bootstrap, url, view, tenant, policy_from(kafka_settings),
                                     retention_days=36_500)
        [f] = tampered.failures
        assert (f.check, f.kind, f.tenant_id, f.session_id, f.chain_index) == \
            ("replay", "row_differs", tenant, "s-004", 42)
        assert "payload" in f.detail
        code, report = cli(["audit", "verify", "--tenant", tenant, "--json"], capsys)
        assert code == 1
        assert [(f["check"], f["kind"], f["session_id"], f["chain_index"]) for f in report["failures"]] == \
            [("compare", "row_differs", "s-004", 42)]
        code, report = cli(["audit", "verify", "--tenant", tenant, "--source", "clickhouse", "--json"], capsys)
        assert code == 1
        assert [(f["check"], f["session_id"], f["chain_index"]) for f in report["failures"]] == \
            [("payload", "s-004", 42)]
        assert not [name for (name,) in live.query_rows("SHOW DATABASES") if name.startswith("replay_")]
    finally:
        registry.close()
