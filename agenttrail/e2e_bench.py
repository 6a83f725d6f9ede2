"""End-to-end figures on one machine: events/s verified+chained+landed, produce→queryable latency.

Everything runs as real processes on loopback (LocalStack): the KRaft broker, N workers and the
serve process (ClickHouse sink + LanceDB sink + API).
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
import tempfile
import threading
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from agenttrail.config import Settings
from agenttrail.control.provision import ProvisionedAgent, provision_tenant
from agenttrail.control.service import Registry
from agenttrail.errors import AgentTrailError
from agenttrail.kafka.admin import admin_client
from agenttrail.kafka.topics import events_topic
from agenttrail.producers.client import AgentClient
from agenttrail.producers.fleet import run_fleet
from agenttrail.producers.producer import EventProducer
from agenttrail.stack import LocalStack

logger = logging.getLogger(__name__)


def _settings(base: Settings, home: Path) -> Settings:
    return base.with_overrides(home=home, clickhouse_url=f"chdb:///{home}/clickhouse",
                               lancedb_uri=str(home / "lancedb"), kafka_bootstrap=None)


def _landed(stack: LocalStack, key: str) -> int:
    try:
        return int(stack.get("/api/stats", key).get("events", 0))
    except Exception:
        return -1


def _provision(stack: LocalStack, tenant: str, agents: int) -> tuple[list[ProvisionedAgent], str]:
    with Registry(stack.settings, stack.bootstrap).start() as registry:
        provisioned = provision_tenant(registry, tenant, agents)
        _, secret = registry.create_api_key(tenant, ["*"], name="bench")
    return provisioned, secret


def _drop_events_topic(bootstrap: str, tenant: str) -> None:
    """Delete a finished round's events topic. The chain group balances partition *counts* over
    every tenant topic (cooperative-sticky), so the idle partitions of earlier rounds would
    otherwise count as load and could leave one of two workers with few of the measured
    tenant's partitions; the next round then measures one tenant spread over all workers."""
    futures = admin_client(bootstrap).delete_topics([events_topic(tenant)], operation_timeout=30)
    for future in futures.values():
        try:
            future.result(60)
        except KafkaException as exc:
            logger.warning("end-to-end bench: could not delete %s: %s", events_topic(tenant), exc)


def _round(stack: LocalStack, tenant: str, workers: int, events: int, timeout: float) -> dict[str, Any]:
    """One measured round on a running stack: provision ``tenant``, pre-produce about ``events``
    events into it, start ``workers`` workers and time them (with the sink) until every event of
    the tenant is queryable; the workers are stopped again at the end."""
    agents, key = _provision(stack, tenant, 8)
    producer = EventProducer(stack.bootstrap)
    keys = {tenant: [(a.agent_id, a.key_id, a.key) for a in agents]}
    report = run_fleet(producer, keys, rate=0, duration=max(3.0, events / 4000), seed=3)
    producer.close(30)
    total = report.acknowledged
    stack.workers = workers
    start = time.monotonic()
    stack.start_workers()
    try:
        first: tuple[float, int] | None = None
        while (landed := _landed(stack, key)) < total:
            stack.check_alive()
            now = time.monotonic()
            if now - start > timeout:
                raise AgentTrailError(f"end-to-end bench: {landed} of {total} landed after {timeout:.0f}s")
            if first is None and landed > 0:
                first = (now, landed)
            # Each poll is a count over the growing table in the process under test: poll slowly
            # until the end is near, then finely.
            time.sleep(0.1 if landed > total * 0.9 else 1.0)
        end = time.monotonic()
    finally:
        stack.stop_workers()
        _drop_events_topic(stack.bootstrap, tenant)
    first = first or (start, 0)
    steady = max(end - first[0], 1e-6)
    return {"workers": workers, "events": total, "seconds": round(end - start, 2),
            "events_per_s": round((total - first[1]) / steady, 1), "steady_s": round(steady, 2),
            "wall_events_per_s": round(total / (end - start), 1)}


def bench_end_to_end(base: Settings, events: int = 60_000, worker_counts: tuple[int, ...] = (1, 2),
                     warmup_events: int = 20_000, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Verified+chained+landed events/s with each number of workers, on one running stack.

    Each round pre-produces about ``events`` signed events into a fresh tenant, then times the
    workers + sink until all are queryable: ``events_per_s`` is the steady rate, from the first
    rows answering in the API to the last; ``wall_events_per_s`` also counts the workers' start
    (interpreter, group join, rebuild). A first, unreported round of ``warmup_events`` (0: none)
    runs the same path once, so the figures are the stack's steady state: a fresh broker JVM
    spends ~half a core compiling its hot paths (C2) for the first tens of seconds of load, which
    a long-running deployment does not. The warm-up round's own rate is returned as ``cold``."""
    home = Path(tempfile.mkdtemp(prefix="agenttrail-e2e-"))
    stack = LocalStack(_settings(base, home), workers=1, embed=False)
    try:
        stack.start_broker()
        stack.start_serve()
        cold = _round(stack, "warmup", 1, warmup_events, timeout) if warmup_events > 0 else None
        results = [_round(stack, f"bench{n}", n, events, timeout) for n in worker_counts]
        for result in results:
            result["cold_events_per_s"] = cold["events_per_s"] if cold else None
        return results
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in (0, 1])."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bench_latency(base: Settings, samples: int = 100, background_rate: float = 2000.0,
                  warmup: int = 5) -> dict[str, Any]:
    """p50/p99 from an SDK send to the event answering in the API, under background load.

    The first ``warmup`` probes (the probe producer's connection and metadata, the session's
    first rows) are sent and awaited the same way but not counted."""
    home = Path(tempfile.mkdtemp(prefix="agenttrail-lat-"))
    stack = LocalStack(_settings(base, home), workers=1, embed=False)
    stop = threading.Event()
    try:
        stack.start()
        agents, key = _provision(stack, "latency", 5)
        background = EventProducer(stack.bootstrap)
        load = threading.Thread(target=lambda: run_fleet(
            background, {"latency": [(a.agent_id, a.key_id, a.key) for a in agents[1:]]},
            rate=background_rate, duration=(warmup + samples) * 0.6 + 30, seed=5), daemon=True)
        load.start()
        probe = agents[0]
        client = AgentClient(stack.bootstrap, "latency", probe.agent_id, probe.key_id, probe.key)
        session = f"probe-{uuid.uuid4().hex[:8]}"
        latencies: list[float] = []
        for seq in range(warmup + samples):
            sent = time.monotonic()
            client.send(session, seq, "message", {"role": "user", "text": f"probe {seq}"})
            client.flush(10)
            while True:
                try:
                    rows = stack.get(f"/api/sessions/{session}/events?limit=1000", key).get("events", [])
                except urllib.error.HTTPError as exc:  # 404 until the session's first event landed
                    if exc.code != 404:
                        raise
                    rows = []
                if len(rows) > seq:
                    break
                if time.monotonic() - sent > 30:
                    raise AgentTrailError(f"probe {seq} not queryable after 30s")
                time.sleep(0.025)  # polling faster would load the API it measures
            if seq >= warmup:
                latencies.append((time.monotonic() - sent) * 1000)
        client.close(10)
        stop.set()
        ordered = sorted(latencies)
        return {"samples": samples, "background_events_per_s": background_rate,
                "p50_ms": round(statistics.median(ordered), 1),
                "p99_ms": round(percentile(ordered, 0.99), 1), "max_ms": round(ordered[-1], 1)}
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
