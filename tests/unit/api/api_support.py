"""Test support for the API: an in-memory control plane and a two-tenant seeded trail.

`MemoryControl` has the Registry's API surface the API uses, over a real RegistryView fed with
records planned by agenttrail.control.commands (no Kafka). `seed_world` writes signed, chained
events of two tenants through the ClickHouse sink and their texts into LanceDB, and returns the
ids and marker strings of each tenant so tests can scan responses for them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from agenttrail import crypto
from agenttrail.control import commands as cmd
from agenttrail.control.records import SCOPES
from agenttrail.control.view import AgentKeyStatus, ApiKeyInfo, ApiKeyPrincipal, RegistryView
from agenttrail.kafka.topics import CHECKPOINTS_TOPIC, DLQ_TOPIC, ledger_topic
from agenttrail.processors.chain import GENESIS, extend
from agenttrail.processors.checkpoint import build_checkpoint
from agenttrail.processors.embed import embed_batch
from agenttrail.processors.embedder import FakeEmbedder
from agenttrail.processors.service_key import ServiceKey
from agenttrail.schemas.envelope import build_envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord
from agenttrail.sinks.clickhouse.store import ClickHouseStore
from agenttrail.sinks.clickhouse.writer import ClickHouseSink
from agenttrail.sinks.lancedb import LanceStore

HOUR_US = 3_600_000_000


def now_us() -> int:
    return time.time_ns() // 1000


class MemoryControl:
    """The control plane without Kafka: records are applied to the view as they are planned."""

    def __init__(self) -> None:
        self.view = RegistryView()
        self._lock = threading.RLock()
        self.touched: list[str] = []

    def _apply(self, *records: object) -> None:
        with self._lock:
            for record in records:
                self.view.apply(record)  # type: ignore[arg-type]

    @contextmanager
    def read(self) -> Iterator[RegistryView]:
        with self._lock:
            yield self.view

    def create_tenant(self, tenant_id: str) -> None:
        self._apply(cmd.plan_tenant(self.view, tenant_id, 90, now_us()))

    def authenticate(self, secret: str) -> ApiKeyPrincipal:
        with self._lock:
            principal = self.view.authenticate(secret, now_us())
            self.touched.append(principal.key_id)
            return principal

    def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        return self.view.api_keys(tenant_id)

    def create_api_key(self, tenant_id: str, scopes: list[str] | tuple[str, ...], *, name: str = "",
                       expires_at: int | None = None) -> tuple[ApiKeyInfo, str]:
        record, secret = cmd.plan_api_key(self.view, tenant_id, scopes, now_us(), name=name, expires_at=expires_at)
        self._apply(record)
        return cmd.require_api_key(self.view, record.key_id), secret

    def rotate_api_key(self, key_id: str, *, grace_seconds: int | None = None,
                       tenant_id: str | None = None) -> tuple[ApiKeyInfo, str]:
        new, rotate, secret = cmd.plan_rotate_api_key(self.view, key_id, now_us(), grace_seconds or 0, tenant_id)
        self._apply(new, rotate)
        return cmd.require_api_key(self.view, new.key_id), secret

    def revoke_api_key(self, key_id: str, *, tenant_id: str | None = None) -> ApiKeyInfo:
        self._apply(cmd.plan_revoke_api_key(self.view, key_id, now_us(), tenant_id))
        return cmd.require_api_key(self.view, key_id)

    def create_registration_key(self, tenant_id: str) -> str:
        record, secret = cmd.plan_registration_key(self.view, tenant_id, 3600, now_us())
        self._apply(record)
        return secret

    def register_agent(self, rk_secret: str, public_key: bytes, fingerprint: str, *,
                       tenant_id: str | None = None) -> tuple[str, str]:
        record = cmd.plan_redeem(self.view, rk_secret, public_key, fingerprint, now_us(), tenant_id=tenant_id)
        self._apply(record)
        return record.agent_id, record.key_id

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> AgentKeyStatus:
        return self.view.agent_key(tenant_id, key_id, at_ts_micros, agent_id)

    def service_public_keys(self) -> list[object]:
        return self.view.service_public_keys()


@dataclass
class Tenant:
    tenant_id: str
    marker: str  # a unique string in every text this tenant wrote
    agent_id: str = ""
    session_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # scope -> secret
    key_ids: dict[str, str] = field(default_factory=dict)  # scope -> key id
    used_rk: str = ""

    def secrets_of(self) -> list[str]:
        """Everything of this tenant that must never appear in another tenant's responses."""
        return [self.marker, self.agent_id, *self.session_ids, *self.event_ids, *self.key_ids.values()]


@dataclass
class World:
    a: Tenant
    b: Tenant
    control: MemoryControl
    embedder: FakeEmbedder
    tampered_session: str  # a session of A whose stored chain was edited


def _records(tenant: Tenant, key: crypto.SigningKey, sessions: int, base_ts: int) -> list[LedgerRecord]:
    out: list[LedgerRecord] = []
    for s in range(sessions):
        session_id = f"{tenant.tenant_id}-sess-{s}-{uuid.uuid4().hex[:8]}"
        tenant.session_ids.append(session_id)
        state = GENESIS
        plan: list[tuple[str, object]] = [
            ("session_start", {"note": tenant.marker}),
            ("message", {"role": "user", "text": f"{tenant.marker} question number {s} about invoices"}),
            ("llm_call", {"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001,
                          "latency_ms": 12, "prompt": f"{tenant.marker} prompt {s}"}),
            ("tool_call", {"tool": "search", "call_id": f"c{s}", "args": {"q": tenant.marker}}),
            ("tool_result", {"tool": "search", "call_id": f"c{s}", "status": "error" if s == 0 else "ok",
                             "latency_ms": 3, "output": f"{tenant.marker} result {s}"}),
            ("lesson", {"text": f"{tenant.marker} lesson {s}: check the tool status", "category": "ops"}),
            ("session_end", {"status": "ok"}),
        ]
        for i, (event_type, payload) in enumerate(plan):
            ts = base_ts + s * 60_000_000 + i * 1_000_000
            env = build_envelope(key=key, tenant_id=tenant.tenant_id, agent_id=tenant.agent_id,
                                 session_id=session_id, seq=i, type=event_type, payload=payload, ts=ts,
                                 attributes={"marker": tenant.marker})
            index, prev, head, state = extend(state, signing_bytes(env))
            out.append(LedgerRecord(env, index, prev, head, False, 0, len(out)))
            tenant.event_ids.append(env.event_id)
            text = payload.get("text") if isinstance(payload, dict) else None
            if isinstance(text, str):
                tenant.texts.append(text)
    return out


def seed_world(store: ClickHouseStore, lance: LanceStore, sessions: int = 4) -> World:
    control = MemoryControl()
    embedder = FakeEmbedder(dim=lance.dim)
    base = now_us() - 2 * HOUR_US
    tenants = {t: Tenant(t, f"MARK{t.upper()}{uuid.uuid4().hex[:10]}") for t in ("alpha", "bravo")}
    sink = ClickHouseSink(store, batch_rows=10_000, max_age_s=1e9, retention_days=36_500)
    all_records: list[LedgerRecord] = []
    for n, tenant in enumerate(tenants.values()):
        control.create_tenant(tenant.tenant_id)
        for scope in sorted(SCOPES):
            info, secret = control.create_api_key(tenant.tenant_id, [scope], name=f"{scope}-{tenant.marker}")
            tenant.keys[scope], tenant.key_ids[scope] = secret, info.key_id
        key = crypto.SigningKey.generate()
        rk = control.create_registration_key(tenant.tenant_id)
        tenant.agent_id, _ = control.register_agent(rk, key.public_key, f"fp-{tenant.tenant_id}")
        tenant.used_rk = rk
        records = _records(tenant, key, sessions, base + n * 1_000_000)
        for offset, rec in enumerate(records):
            sink.add_ledger(ledger_topic(tenant.tenant_id), 0, offset, rec)
        all_records += records
        signer = ServiceKey.generate(f"svc-{tenant.tenant_id}")
        for i in range(2):  # two dead letters and two checkpoints: enough for a second page
            dead = {"reason": "bad_signature", "detail": f"{tenant.marker} detail {i}", "tenant_topic":
                    f"agenttrail.{tenant.tenant_id}.events", "partition": 0, "offset": i, "ts": base + i,
                    "original_b64": "AAAA"}
            sink.add(DLQ_TOPIC, 0, 2 * n + i, tenant.tenant_id.encode(), json.dumps(dead).encode())
            heads = {tenant.session_ids[i]: (7, bytes([i + 1]) * 32)}
            note = build_checkpoint(tenant.tenant_id, heads, None, base + i, signer).to_text()
            sink.add(CHECKPOINTS_TOPIC, 0, 2 * n + i, tenant.tenant_id.encode(), note.encode(), base // 1000 + i)
    # A tampered copy of one of A's sessions: a payload hash edited after the fact.
    a = tenants["alpha"]
    tampered = next(r for r in all_records if r.envelope.session_id == a.session_ids[-1] and r.chain_index == 2)
    sink.flush(force=True)
    store.command(
        "ALTER TABLE events UPDATE payload_sha256 = {h:String} WHERE tenant_id = {t:String} AND "
        "session_id = {s:String} AND chain_index = 2 SETTINGS mutations_sync = 2",
        {"h": "00" * 32, "t": a.tenant_id, "s": tampered.envelope.session_id})
    lance.upsert(embed_batch(all_records, embedder))
    return World(tenants["alpha"], tenants["bravo"], control, embedder, tampered.envelope.session_id)
