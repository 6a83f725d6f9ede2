"""A synthetic, fully signed and chained dataset, and `bench_audit` for `agenttrail bench audit`.

The dataset is built with the pipeline's own pure code (signing_bytes, chain.extend,
build_checkpoint); keys are derived from fixed seeds, so runs are reproducible.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from hashlib import sha256

from agenttrail import crypto
from agenttrail.audit.parallel import plan_jobs
from agenttrail.audit.report import AuditReport
from agenttrail.audit.verify import StaticKeys, verify_records
from agenttrail.processors.chain import GENESIS, ChainState, extend
from agenttrail.processors.checkpoint import Checkpoint, build_checkpoint
from agenttrail.processors.service_key import ServiceKey
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope, signing_bytes
from agenttrail.schemas.ledger import LedgerRecord

T0 = 1_750_000_000_000_000  # epoch micros


@dataclass(frozen=True, slots=True)
class Dataset:
    tenant_id: str
    records: list[LedgerRecord]
    keys: StaticKeys
    agent_keys: dict[str, crypto.SigningKey]  # agent_id -> key
    service_key: ServiceKey
    checkpoint: Checkpoint

    def heads(self) -> dict[str, tuple[int, bytes]]:
        out: dict[str, tuple[int, bytes]] = {}
        for rec in self.records:
            out[rec.envelope.session_id] = (rec.chain_index + 1, rec.entry_hash)
        return out


def agent_key(tenant_id: str, i: int) -> crypto.SigningKey:
    return crypto.SigningKey.from_seed(sha256(f"audit-synthetic/{tenant_id}/agent/{i}".encode()).digest())


def service_key(name: str = "agenttrail-service", label: str = "audit-synthetic") -> ServiceKey:
    return ServiceKey.from_seed(sha256(f"{label}/service".encode()).digest(), name)


def synthetic_dataset(n: int, *, tenant_id: str = "audit-bench", sessions: int = 100, agents: int = 4,
                      payload_bytes: int = 200, service: ServiceKey | None = None) -> Dataset:
    """`n` signed events round-robin over `sessions` sessions (one agent per session), chained,
    with one signed checkpoint over the final heads."""
    keys = [agent_key(tenant_id, i) for i in range(agents)]
    agent_ids = [f"ag-{tenant_id}-{i}" for i in range(agents)]
    bodies = [canonical_json({"role": "assistant", "text": f"{v}:" + "x" * payload_bytes}) for v in range(16)]
    hashes = [sha256(b).digest() for b in bodies]
    states: dict[str, ChainState] = {}
    seqs: dict[str, int] = {}
    records: list[LedgerRecord] = []
    append = records.append
    for i in range(n):
        s = i % sessions
        session = f"s-{s:05d}"
        a = s % agents
        key = keys[a]
        seq = seqs.get(session, 0)
        seqs[session] = seq + 1
        v = i % len(bodies)
        env = Envelope(str(uuid.UUID(int=(0x0190 << 112) | i)), tenant_id, agent_ids[a], session, seq,
                       T0 + i, "message", bodies[v], hashes[v], {"run": "bench"}, key.key_id)
        message = signing_bytes(env)
        env = Envelope(env.event_id, tenant_id, env.agent_id, session, seq, env.ts, env.type, env.payload,
                       env.payload_sha256, env.attributes, env.key_id, key.sign(message))
        index, prev, entry, states[session] = extend(states.get(session, GENESIS), message)
        append(LedgerRecord(env, index, prev, entry, False, s % 4, i // 4))
    signer = service or service_key()
    heads = {sid: (st.index, st.head) for sid, st in states.items()}
    cp = build_checkpoint(tenant_id, heads, None, T0 + n + 1, signer)
    lookup = StaticKeys({(tenant_id, k.key_id): (agent_ids[i], k.public_key) for i, k in enumerate(keys)})
    return Dataset(tenant_id, records, lookup, dict(zip(agent_ids, keys, strict=True)), signer, cp)


def run_audit(data: Dataset, signatures: bool, jobs: int | None = None) -> AuditReport:
    return verify_records(data.records, data.keys, checkpoints=[data.checkpoint],
                          service_keys=[data.service_key.verifier], signatures=signatures,
                          tenant_id=data.tenant_id, source="synthetic", jobs=jobs)


def _best_rate(data: Dataset, jobs: int, runs: int) -> float:
    """Events/s of the chain check (no signatures), the best of `runs` runs."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        report = run_audit(data, signatures=False, jobs=jobs)
        best = min(best, time.perf_counter() - t0)
        if not report.ok:
            raise AssertionError(f"bench dataset did not verify: {report.failures[:3]}")
    return len(data.records) / best


def bench_audit(n: int = 100_000, jobs: int | None = None, runs: int = 3) -> dict[str, float]:
    """Events/s of the audit core: the chain check (payload hashes, signing bytes, chain, checkpoint
    root) in one process and in `jobs` processes (default one per CPU; `jobs` in the result is what
    was used, 1 where forking is not safe), each the best of `runs`; then one run with every agent
    signature verified as well, in `jobs` processes."""
    t0 = time.perf_counter()
    data = synthetic_dataset(n)
    generate_s = time.perf_counter() - t0
    used = plan_jobs(jobs, n, len(data.heads()))
    one_core = _best_rate(data, 1, runs)
    parallel = _best_rate(data, used, runs) if used > 1 else one_core
    t1 = time.perf_counter()
    full = run_audit(data, signatures=True, jobs=used)
    t2 = time.perf_counter()
    if not full.ok:
        raise AssertionError(f"bench dataset did not verify: {full.failures[:3]}")
    return {
        "events": float(n),
        "generate_s": generate_s,
        "jobs": float(used),
        "chain_events_per_s": parallel,
        "chain_events_per_s_1core": one_core,
        "with_signatures_events_per_s": n / (t2 - t1),
        "signatures_per_s": full.signatures_per_s or 0.0,
    }
