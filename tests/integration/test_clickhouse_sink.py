"""The ClickHouse sink against the real broker: kill -9 mid-run, restart, nothing missing or doubled.

The sink runs in a subprocess (it owns the chDB engine); the test watches the group's committed
offsets, kills the sink with SIGKILL while it is inserting, restarts it, waits for the end, and
only then opens the chDB store itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from agenttrail.kafka.admin import TopicSpec, committed_offsets, ensure_topics
from agenttrail.kafka.clients import consumer_config, producer_config
from agenttrail.kafka.topics import ledger_topic
from agenttrail.schemas.ledger import encode_ledger
from agenttrail.sinks.clickhouse.schema import open_store
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate

PARTITIONS = 4
N = 60_000

SINK_SCRIPT = textwrap.dedent(
    """
    import logging, signal, sys, threading
    from agenttrail.config import Settings
    from agenttrail.sinks.clickhouse.consumer import run_clickhouse_sink
    from agenttrail.sinks.clickhouse.schema import open_store

    logging.basicConfig(level=logging.INFO)
    bootstrap, url, group = sys.argv[1:4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = open_store(url)
    run_clickhouse_sink(Settings(kafka_bootstrap=bootstrap, clickhouse_url=url, retention_days=36500),
                        store, stop, group_id=group, instance_id=group + '-0', batch_rows=5000, max_age_s=0.5)
    store.close()
    """
)


def _start_sink(script: Path, bootstrap: str, url: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(script), bootstrap, url, group], stdout=out, stderr=out)


def _committed(bootstrap: str, group: str, topics: list[str]) -> int:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in committed_offsets(consumer, parts))
    finally:
        consumer.close()


def _wait_committed(bootstrap: str, group: str, topics: list[str], at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = _committed(bootstrap, group, topics)
        if done >= at_least:
            return done
        time.sleep(0.2)
    raise AssertionError(f"sink committed {_committed(bootstrap, group, topics)} < {at_least} in {timeout}s")


def test_kill_9_mid_batch_then_restart_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    tenants = (f"cha-{suffix}", f"chb-{suffix}")
    topics = [ledger_topic(t) for t in tenants]
    ensure_topics(kafka_bootstrap, [TopicSpec(t, PARTITIONS) for t in topics])
    records = list(generate(SyntheticSpec(tenants=tenants, events=N, seed=21)))
    producer = Producer(producer_config(kafka_bootstrap))
    for rec in records:
        env = rec.envelope
        producer.produce(ledger_topic(env.tenant_id), key=env.session_id.encode(), value=encode_ledger(rec))
        producer.poll(0)
    assert producer.flush(60) == 0

    script = tmp_path / "sink.py"
    script.write_text(SINK_SCRIPT)
    url = f"chdb://{tmp_path}/clickhouse"
    group = f"ch-sink-{suffix}"
    log = tmp_path / "sink.log"

    first = _start_sink(script, kafka_bootstrap, url, group, log)
    try:
        progress = _wait_committed(kafka_bootstrap, group, topics, 1, timeout=90)
        os.kill(first.pid, signal.SIGKILL)  # mid-run: batches pending, an insert possibly in flight
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert progress < N, "the sink finished before it could be killed; make N larger"

    second = _start_sink(script, kafka_bootstrap, url, group, log)
    try:
        _wait_committed(kafka_bootstrap, group, topics, N, timeout=180)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()

    store = open_store(url)
    try:
        in_tenants = {"tenants": list(tenants)}
        where = "WHERE has({tenants:Array(String)}, tenant_id)"
        assert store.command(f"SELECT count() FROM events FINAL {where}", in_tenants) == N
        dupes = store.command(
            f"SELECT count() FROM (SELECT 1 FROM events FINAL {where} "
            "GROUP BY tenant_id, session_id, chain_index HAVING count() > 1)", in_tenants)
        assert dupes == 0
        keys = store.query_rows(
            f"SELECT tenant_id, session_id, chain_index FROM events FINAL {where}", in_tenants)
        assert set(keys) == {(r.envelope.tenant_id, r.envelope.session_id, r.chain_index) for r in records}
        sessions = store.command(f"SELECT count() FROM v_sessions {where}", in_tenants)
        assert sessions == len({r.envelope.session_id for r in records})
    finally:
        store.close()


def test_new_tenant_topic_is_picked_up_within_seconds(kafka_bootstrap: str, tmp_path: Path) -> None:

    from agenttrail.config import Settings
    from agenttrail.sinks.clickhouse.consumer import ClickHouseSinkRunner

    store = open_store(f"chdb://{tmp_path}/clickhouse")
    runner = ClickHouseSinkRunner(
        Settings(kafka_bootstrap=kafka_bootstrap, retention_days=36500), store,
        group_id=f"ch-new-{uuid.uuid4().hex[:6]}", max_age_s=0.2,
    )
    runner.start()
    try:
        time.sleep(3)  # subscribed before the tenant exists
        tenant = f"late-{uuid.uuid4().hex[:6]}"
        ensure_topics(kafka_bootstrap, [TopicSpec(ledger_topic(tenant), PARTITIONS)])
        records = list(generate(SyntheticSpec(tenants=(tenant,), events=500, seed=2)))
        producer = Producer(producer_config(kafka_bootstrap))
        for rec in records:
            producer.produce(ledger_topic(tenant), key=rec.envelope.session_id.encode(),
                             value=encode_ledger(rec))
        assert producer.flush(30) == 0
        produced_at = time.monotonic()
        count = 0
        while time.monotonic() - produced_at < 20:
            count = store.command(
                "SELECT count() FROM events FINAL WHERE tenant_id = {t:String}", {"t": tenant})
            if count == len(records):
                break
            time.sleep(0.25)
        assert count == len(records)
        assert time.monotonic() - produced_at < 15
    finally:
        runner.stop()
        store.close()
