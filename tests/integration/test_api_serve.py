"""`agenttrail serve` on the real broker: ledgers and embeddings flow into the API, keys and agent
registration go through the live registry, tenants stay apart, SIGTERM stops it cleanly.

The server runs as a subprocess (it owns the chDB engine, one per process).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from agenttrail import crypto
from agenttrail.config import Settings
from agenttrail.control.service import Registry
from agenttrail.kafka.admin import TopicSpec, ensure_topics
from agenttrail.kafka.clients import producer_config
from agenttrail.kafka.topics import EMBEDDINGS_TOPIC, ledger_topic
from agenttrail.processors.embed import EmbeddingRecord, encode_embedding
from agenttrail.schemas.ledger import encode_ledger
from agenttrail.sinks.clickhouse.synthetic import SyntheticSpec, generate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, path: str, key: str | None = None, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"))
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    ta, tb = f"apia{suffix}", f"apib{suffix}"
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap, partitions=4)
    with Registry(settings, kafka_bootstrap).start() as registry:
        registry.create_tenant(ta, 36_500)  # the synthetic events are from 2026-01: keep them
        registry.create_tenant(tb, 36_500)
        _, key_a = registry.create_api_key(ta, ["*"])
        _, key_b = registry.create_api_key(tb, ["*"])
        _, rk_a = registry.create_registration_key(ta)

    records = list(generate(SyntheticSpec(tenants=(ta, tb), events=400, seed=5)))
    ensure_topics(kafka_bootstrap, [TopicSpec(EMBEDDINGS_TOPIC, 4, {})])
    producer = Producer(producer_config(kafka_bootstrap))
    rng = np.random.default_rng(1)
    for rec in records:
        env = rec.envelope
        producer.produce(ledger_topic(env.tenant_id), key=env.session_id.encode(), value=encode_ledger(rec))
        if env.type == "message":
            vec = rng.standard_normal(384).astype(np.float32)
            emb = EmbeddingRecord(env.tenant_id, env.event_id, env.session_id, env.ts, env.type,
                                  f"text of {env.tenant_id}", tuple((vec / np.linalg.norm(vec)).tolist()))
            producer.produce(EMBEDDINGS_TOPIC, key=env.tenant_id.encode(), value=encode_embedding(emb))
    assert producer.flush(30) == 0
    a_ids = {r.envelope.event_id for r in records if r.envelope.tenant_id == ta}
    b_ids = {r.envelope.event_id for r in records if r.envelope.tenant_id == tb}

    port = _free_port()
    env = {**os.environ, "AGENTTRAIL_HOME": str(tmp_path / "home"), "AGENTTRAIL_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "AGENTTRAIL_API_PORT": str(port)}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "agenttrail.cli", "serve", "-v"], env=env, cwd=tmp_path,
                            stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _call(base, "/health")[0] == 200, 90, "the API to listen")

        def a_events() -> set[str] | None:
            seen: set[str] = set()
            cursor = ""
            while True:
                status, page = _call(base, f"/api/events?from=0&limit=1000{cursor}", key_a)
                assert status == 200, page
                seen |= {e["event_id"] for e in page["events"]}
                if not page["next_cursor"]:
                    break
                cursor = f"&cursor={page['next_cursor']}"
            return seen if seen == a_ids else None

        _wait(a_events, 90, "tenant A's events in the API")
        status, page = _call(base, "/api/events?from=0&limit=1000", key_b)
        assert status == 200 and {e["event_id"] for e in page["events"]} <= b_ids

        hits = _wait(lambda: _call(base, "/api/recall?q=text&k=50", key_a)[1].get("hits"), 60, "recall hits")
        assert {h["event_id"] for h in hits} <= a_ids

        status, made = _call(base, "/api/keys", key_a, {"scopes": ["events:read"]})
        assert status == 201 and made["key"]["tenant_id"] == ta
        assert _call(base, "/api/stats?from=0", made["secret"])[0] == 200
        status, _ = _call(base, f"/api/keys/{made['key']['key_id']}", key_b, method="DELETE")
        assert status == 404

        pk = base64.b64encode(crypto.SigningKey.generate().public_key).decode()
        status, reg = _call(base, "/api/agents/register", None,
                            {"registration_key": rk_a, "public_key": pk, "fingerprint": "fp-it"})
        assert status == 200 and reg["tenant_id"] == ta, reg
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(45)
        finally:
            if proc.poll() is None:
                proc.kill()
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
