"""Helpers for pipeline tests: provision tenants, run a worker subprocess, read topics."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from agenttrail.kafka.clients import consumer_config
from agenttrail.processes import spawn_cli, stop_process
from agenttrail.processors.chain import verify_chain
from agenttrail.schemas.envelope import signing_bytes
from agenttrail.schemas.ledger import LedgerRecord, decode_ledger


def worker_overrides(bootstrap: str, home: Path, **extra: str) -> dict[str, str]:
    return {"AGENTTRAIL_KAFKA_BOOTSTRAP": bootstrap, "AGENTTRAIL_HOME": str(home),
            "AGENTTRAIL_CHECKPOINT_INTERVAL_SECONDS": "1", **extra}


def start_worker(bootstrap: str, home: Path, name: str = "w0", *args: str) -> subprocess.Popen[bytes]:
    return spawn_cli(["worker", "--name", name, "--no-embed", *args], worker_overrides(bootstrap, home),
                     home / f"worker-{name}.log")


def stop_worker(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    """SIGTERM (``kill``: SIGKILL, as ``kill -9``) to the worker's PID, 30 s, then SIGKILL."""
    stop_process(proc, 30, sig=signal.SIGKILL if kill else signal.SIGTERM)


def read_all(bootstrap: str, topics: Iterable[str], *, expect: int | None = None, timeout: float = 90,
             idle: float = 3.0) -> list[tuple[str, int, int, bytes | None, bytes]]:
    """(topic, partition, offset, key, value) of every committed record, from the beginning.

    Returns when ``expect`` records were read, or when nothing new came for ``idle`` seconds after
    the end of every partition was reached, or at ``timeout``.
    """
    consumer = Consumer(consumer_config(bootstrap, f"reader-{time.time_ns()}", **{"enable.partition.eof": True}))
    names = list(topics)
    md = consumer.list_topics(timeout=30)
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in names if t in md.topics
             for p in md.topics[t].partitions]
    consumer.assign(parts)
    out: list[tuple[str, int, int, bytes | None, bytes]] = []
    eof: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect:
                break
            msgs = consumer.consume(5000, 0.5)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add((msg.topic(), msg.partition()))
                    continue
                out.append((msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))
                last_new = time.monotonic()
            if expect is None and len(eof) >= len(parts) and time.monotonic() - last_new > idle:
                break
    finally:
        consumer.close()
    return out


def ledger_records(rows: Iterable[tuple[str, int, int, bytes | None, bytes]]) -> list[LedgerRecord]:
    return [decode_ledger(v) for _, _, _, _, v in rows]


def wait_until(predicate: object, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


def chains_of(records: Iterable[LedgerRecord]) -> dict[tuple[str, str], list[LedgerRecord]]:
    """Dedupe on (tenant, session, chain_index), assert no forks and that every chain verifies."""
    by_session: dict[tuple[str, str], dict[int, LedgerRecord]] = defaultdict(dict)
    for rec in records:
        key = (rec.envelope.tenant_id, rec.envelope.session_id)
        seen = by_session[key].get(rec.chain_index)
        assert seen is None or seen == rec, f"fork: two different records at {key} index {rec.chain_index}"
        by_session[key][rec.chain_index] = rec
    chains = {k: [v[i] for i in sorted(v)] for k, v in by_session.items()}
    for key, chain in chains.items():
        report = verify_chain([(r.chain_index, r.prev_hash, r.entry_hash, signing_bytes(r.envelope))
                               for r in chain])
        assert report.ok, (key, report.failure)
    return chains
