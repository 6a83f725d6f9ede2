"""The audit's pure core: ledger records, keys and signed notes in, an AuditReport out (no I/O).

Records may come in any order and from any source (ledger topic, ClickHouse rows, a bundle): they
are grouped by (tenant, session) and sorted by chain_index. For every session the chain is
recomputed with `processors.chain.verify_chain` (same code as the pipeline), every payload that is
not erased must hash to its `payload_sha256`, and every agent signature must verify with the key
the registry says was valid for that tenant at the event's time. Checkpoints must be signed by a
service key and chained; the latest checkpoint whose event count equals what is stored must have a
Merkle root over exactly the recomputed session heads. Retention anchors must verify; a session
named in an anchor may have been purged except for its `lesson` rows, which then verify one by one
(their own prev_hash) and, for the last index, against the anchored head.

For every failing (session, check) the first bad record is reported exactly; later ones are
counted in `more`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from hashlib import sha256
from typing import Any, Protocol

from agenttrail import crypto
from agenttrail.audit.parallel import JobPlan, map_chunks, plan
from agenttrail.audit.report import AuditFailure, AuditReport
from agenttrail.errors import InvalidEvent, VerificationError
from agenttrail.processors.chain import GENESIS, ChainState, verify_chain
from agenttrail.processors.checkpoint import Checkpoint, RetentionAnchor, verify_anchor, verify_checkpoint
from agenttrail.processors.service_key import NoteVerifier
from agenttrail.schemas.envelope import signing_bytes
from agenttrail.schemas.ledger import LedgerRecord

Progress = Callable[[int], None]
SessionKey = tuple[str, str]
SIGNATURE_BATCH = 512  # signatures verified at once: the batch's speed, a bounded batch in memory


class KeyStatus(Protocol):
    valid: bool
    reason: str | None
    public_key: bytes | None


class KeyLookup(Protocol):
    """What the audit needs of the registry view (agenttrail.control.view.RegistryView): an
    in-memory lookup, also used by the forked worker processes of `verify_records(jobs=N)`."""

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> KeyStatus: ...


@dataclass(frozen=True, slots=True)
class StaticKey:
    valid: bool
    reason: str | None
    public_key: bytes | None


class StaticKeys:
    """A KeyLookup over fixed keys: {(tenant, key_id): (agent_id, public key)}, valid at any time."""

    def __init__(self, keys: dict[tuple[str, str], tuple[str, bytes]]) -> None:
        self.keys = dict(keys)

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> StaticKey:
        found = self.keys.get((tenant_id, key_id))
        if found is None or (agent_id is not None and found[0] != agent_id):
            return StaticKey(False, "unknown_key", None)
        return StaticKey(True, None, found[1])


def service_verifiers(view: object) -> list[NoteVerifier]:
    """The checkpoint verifiers published in the registry (view.service_public_keys())."""
    listed = getattr(view, "service_public_keys", None)
    keys = listed() if listed is not None else []
    return [NoteVerifier.from_public_key(k.service, k.public_key) for k in keys]


def group_sessions(records: Iterable[LedgerRecord],
                   failures: list[AuditFailure]) -> dict[SessionKey, list[LedgerRecord]]:
    """{(tenant, session): records sorted by chain_index}; identical copies collapse, differing
    copies of one index are reported as `conflicting_records` (the first copy is kept)."""
    by_session: dict[SessionKey, dict[int, LedgerRecord]] = {}
    for rec in records:
        env = rec.envelope
        key = (env.tenant_id, env.session_id)
        slot = by_session.get(key)
        if slot is None:
            slot = by_session[key] = {}
        seen = slot.setdefault(rec.chain_index, rec)
        if seen is not rec and seen != rec:
            failures.append(AuditFailure("chain", "conflicting_records", env.tenant_id, env.session_id,
                                         rec.chain_index, seen.envelope.event_id, env.event_id,
                                         "two different records claim this chain index"))
    return {key: [slot[i] for i in sorted(slot)] for key, slot in by_session.items()}


def _anchored_heads(anchors: Sequence[RetentionAnchor]) -> dict[SessionKey, ChainState]:
    heads: dict[SessionKey, ChainState] = {}
    for anchor in anchors:
        for sid, length, head in anchor.heads:
            known = heads.get((anchor.tenant, sid))
            if known is None or known.index < length:
                heads[(anchor.tenant, sid)] = ChainState(length, head)
    return heads


def _runs(entries: list[tuple[int, bytes, bytes, bytes]]) -> list[list[tuple[int, bytes, bytes, bytes]]]:
    runs: list[list[tuple[int, bytes, bytes, bytes]]] = []
    for entry in entries:
        if runs and runs[-1][-1][0] + 1 == entry[0]:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _chain_failure(tenant: str, session: str, report: object) -> AuditFailure:
    f = report.failure  # type: ignore[attr-defined]
    return AuditFailure("chain", f.kind.value, tenant, session, f.chain_index, f.expected, f.actual,
                        f"position {f.position} in the stored order")


def _signing_slow(tenant: str, session: str, chain: list[LedgerRecord], failures: list[AuditFailure]
                  ) -> tuple[list[bytes | None], list[tuple[int, bytes, bytes, bytes]]]:
    signing: list[bytes | None] = []
    entries: list[tuple[int, bytes, bytes, bytes]] = []
    for rec in chain:
        try:
            message = signing_bytes(rec.envelope)
        except InvalidEvent as exc:
            failures.append(AuditFailure("chain", "malformed", tenant, session, rec.chain_index,
                                         "a well-formed envelope", str(exc)))
            signing.append(None)
            continue
        signing.append(message)
        entries.append((rec.chain_index, rec.prev_hash, rec.entry_hash, message))
    return signing, entries


def check_session_chain(tenant: str, session: str, chain: list[LedgerRecord], anchored: ChainState | None,
                        failures: list[AuditFailure]) -> tuple[list[bytes | None], ChainState]:
    """Recompute one session's chain; returns (signing bytes per record, the head to certify)."""
    try:  # the fast path: every envelope well-formed
        entries = [(rec.chain_index, rec.prev_hash, rec.entry_hash, signing_bytes(rec.envelope)) for rec in chain]
        signing: list[bytes | None] = [entry[3] for entry in entries]
    except InvalidEvent:
        signing, entries = _signing_slow(tenant, session, chain, failures)
    last = chain[-1]
    stored_head = ChainState(last.chain_index + 1, last.entry_hash)
    if anchored is None:
        report = verify_chain(entries, GENESIS)
        if not report.ok:
            failures.append(_chain_failure(tenant, session, report))
        return signing, stored_head
    # A session under a retention anchor: what remains are runs (lessons after a purge, or all).
    for run in _runs(entries):
        start = anchored if run[0][0] == anchored.index else (GENESIS if run[0][0] == 0 else None)
        report = verify_chain(run, start)
        if not report.ok:
            failures.append(_chain_failure(tenant, session, report))
            break
    at_cut = next((e for e in entries if e[0] == anchored.index - 1), None)
    if at_cut is not None and at_cut[2] != anchored.head:
        failures.append(AuditFailure("anchor", "head_mismatch", tenant, session, at_cut[0],
                                     anchored.head.hex(), at_cut[2].hex(), "record at the anchored head"))
    return signing, stored_head if stored_head.index > anchored.index else anchored


def _first_per_session(found: list[AuditFailure]) -> list[AuditFailure]:
    if len(found) <= 1:
        return found
    first = found[0]
    return [AuditFailure(first.check, first.kind, first.tenant_id, first.session_id, first.chain_index,
                         first.expected, first.actual, first.detail, len(found) - 1)]


def check_payloads(tenant: str, session: str, chain: list[LedgerRecord]) -> list[AuditFailure]:
    bad = [rec for rec in chain
           if (env := rec.envelope).payload and sha256(env.payload).digest() != env.payload_sha256]
    return _first_per_session([
        AuditFailure("payload", "payload_hash_mismatch", tenant, session, rec.chain_index,
                     rec.envelope.payload_sha256.hex(), sha256(rec.envelope.payload).hexdigest())
        for rec in bad])


def public_key_for(keys: KeyLookup, rec: LedgerRecord) -> tuple[bytes | None, str | None]:
    env = rec.envelope
    status = keys.agent_key(env.tenant_id, env.key_id, env.ts, env.agent_id)
    if status.valid and status.public_key is not None:
        return status.public_key, None
    if status.reason == "agent_revoked":  # revoked later: the events signed before still stand
        info = getattr(keys, "agent", lambda *_: None)(env.tenant_id, env.agent_id)
        revoked_at = getattr(info, "revoked_at", None)
        if info is not None and info.key_id == env.key_id and revoked_at is not None and env.ts < revoked_at:
            return info.public_key, None
    return None, status.reason or "unknown_key"


def check_signatures(tenant: str, session: str, chain: list[LedgerRecord], signing: list[bytes | None],
                     keys: KeyLookup) -> tuple[int, list[AuditFailure]]:
    """(records checked, the first key or signature failure in chain order with the count of later
    ones). Signatures are verified SIGNATURE_BATCH at a time (crypto.verify_many: the answers of
    crypto.verify, checked as one batch)."""
    found: list[tuple[int, AuditFailure]] = []  # (position in the chain, failure)
    signed: list[tuple[int, bytes, bytes]] = []  # (position, public key, signing bytes)
    checked = 0
    for pos, (rec, message) in enumerate(zip(chain, signing, strict=True)):
        if message is None:
            continue
        checked += 1
        public, reason = public_key_for(keys, rec)
        if public is not None:
            signed.append((pos, public, message))
            continue
        env = rec.envelope
        found.append((pos, AuditFailure("key", reason or "unknown_key", tenant, session, rec.chain_index,
                                        "a key valid for this tenant at ts", f"{env.key_id} of {env.agent_id}",
                                        f"ts {env.ts}")))
    for lo in range(0, len(signed), SIGNATURE_BATCH):
        part = signed[lo:lo + SIGNATURE_BATCH]
        verdicts = crypto.verify_many([pk for _, pk, _ in part], [m for _, _, m in part],
                                      [chain[pos].envelope.signature for pos, _, _ in part])
        for (pos, _, _), ok in zip(part, verdicts, strict=True):
            if not ok:
                env = chain[pos].envelope
                found.append((pos, AuditFailure("signature", "bad_signature", tenant, session, chain[pos].chain_index,
                                                f"a valid Ed25519 signature by {env.key_id}",
                                                env.signature.hex()[:32] + "…")))
    found.sort(key=lambda item: item[0])
    return checked, _first_per_session([failure for _, failure in found])


def _note_failure(check: str, tenant: str, exc: VerificationError, note: object) -> AuditFailure:
    where = exc.where
    return AuditFailure(check, str(exc).replace(" ", "_"), tenant, None, None,
                        str(where.get("expected", "")), str(where.get("actual", "")),
                        f"{check} at time {getattr(note, 'time', '?')}")


def _check_note_chain(kind: str, tenant: str, notes: Sequence[object], verify: Any,
                      verifiers: Sequence[NoteVerifier], failures: list[AuditFailure]) -> None:
    """Each note's signature and its link to the one before it, in log order."""
    previous: object = None
    for note in notes:
        try:
            verify(note, verifiers, previous=previous)
        except VerificationError as exc:
            failures.append(_note_failure(kind, tenant, exc, note))
        previous = note


def check_notes(tenant: str, checkpoints: Sequence[Checkpoint], anchors: Sequence[RetentionAnchor],
                verifiers: Sequence[NoteVerifier], heads: dict[str, tuple[int, bytes]] | None,
                failures: list[AuditFailure], notes: list[str]) -> tuple[int, int]:
    """Signatures and links of the tenant's checkpoints and anchors (in log order); with `heads`,
    the latest checkpoint covering exactly the stored event count must certify those heads."""
    _check_note_chain("checkpoint", tenant, checkpoints, verify_checkpoint, verifiers, failures)
    _check_note_chain("anchor", tenant, anchors, verify_anchor, verifiers, failures)
    if heads is None:
        return len(checkpoints), len(anchors)
    stored = sum(length for length, _ in heads.values())
    matching = [cp for cp in checkpoints if cp.events == stored]
    if matching:
        cp = matching[-1]
        try:
            verify_checkpoint(cp, verifiers, expected_heads=heads)
        except VerificationError as exc:
            failures.append(_note_failure("checkpoint", tenant, exc, cp))
    elif checkpoints and checkpoints[-1].events > stored:
        latest = checkpoints[-1]
        failures.append(AuditFailure("checkpoint", "records_missing", tenant, None, None,
                                     f"{latest.events} events", f"{stored} events",
                                     f"latest checkpoint at time {latest.time} covers more than is stored"))
    elif checkpoints:
        notes.append(f"{tenant}: {stored - checkpoints[-1].events} events are newer than the latest checkpoint")
    else:
        notes.append(f"{tenant}: no checkpoint to check the session heads against")
    return len(checkpoints), len(anchors)


@dataclass(slots=True)
class SessionResults:
    """What checking a set of sessions produced (mergeable across worker processes)."""

    failures: list[AuditFailure]
    heads: dict[SessionKey, tuple[int, bytes]]
    events: int = 0
    signed: int = 0
    chain_s: float = 0.0
    sig_s: float = 0.0

    def add(self, other: SessionResults) -> None:
        """Append the results of the sessions that come after these."""
        self.failures.extend(other.failures)
        self.heads.update(other.heads)
        self.events += other.events
        self.signed += other.signed
        self.chain_s += other.chain_s
        self.sig_s += other.sig_s


def verify_sessions(items: Sequence[tuple[SessionKey, list[LedgerRecord]]], anchored: dict[SessionKey, ChainState],
                    keys: KeyLookup | None, signatures: bool, progress: Progress | None = None) -> SessionResults:
    out = SessionResults([], {})
    for (tenant, session), chain in items:
        t1 = time.perf_counter()
        signing, head = check_session_chain(tenant, session, chain, anchored.get((tenant, session)), out.failures)
        out.failures.extend(check_payloads(tenant, session, chain))
        out.heads[(tenant, session)] = (head.index, head.head)
        t2 = time.perf_counter()
        out.chain_s += t2 - t1
        if signatures and keys is not None:
            count, found = check_signatures(tenant, session, chain, signing, keys)
            out.signed += count
            out.failures.extend(found)
            out.sig_s += time.perf_counter() - t2
        out.events += len(chain)
        if progress is not None:
            progress(len(chain))
    return out


def verify_all_sessions(items: Sequence[tuple[SessionKey, list[LedgerRecord]]],
                        anchored: dict[SessionKey, ChainState], keys: KeyLookup | None, signatures: bool,
                        jobs: int | None = None, progress: Progress | None = None
                        ) -> tuple[SessionResults, JobPlan]:
    """`verify_sessions` over all sessions, split over `jobs` forked processes when that is safe
    and pays (audit.parallel.plan); the results are the same. Returns (results, the plan followed:
    how many processes checked, and why fewer than `jobs`)."""
    weights = [len(chain) for _, chain in items]
    used = plan(jobs, sum(weights), len(items))
    if used.processes == 1:
        return verify_sessions(items, anchored, keys, signatures, progress), used
    out = SessionResults([], {})
    t0 = time.perf_counter()
    work = partial(verify_sessions, anchored=anchored, keys=keys, signatures=signatures)
    for part in map_chunks(work, items, weights, used.processes):
        out.add(part)
        if progress is not None:
            progress(part.events)
    # The workers' seconds add up over processes: report the wall-clock time, shared in their proportion.
    wall, busy = time.perf_counter() - t0, out.chain_s + out.sig_s
    if busy > 0:
        out.chain_s, out.sig_s = wall * out.chain_s / busy, wall * out.sig_s / busy
    return out, used


def verify_records(
    records: Iterable[LedgerRecord],
    keys: KeyLookup | None,
    *,
    checkpoints: Sequence[Checkpoint] = (),
    anchors: Sequence[RetentionAnchor] = (),
    service_keys: Sequence[NoteVerifier] = (),
    signatures: bool = True,
    whole_tenant: bool = True,
    tenant_id: str | None = None,
    source: str = "records",
    progress: Progress | None = None,
    jobs: int | None = None,
) -> AuditReport:
    """Verify everything; `whole_tenant=False` (a session filter) skips the checkpoint-root check.
    Sessions are checked in up to `jobs` processes (default: one per CPU; 1 = in this process); the
    report says how many did and, if fewer, why (`processes`, `processes_note`)."""
    failures: list[AuditFailure] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    sessions = group_sessions(records, failures)
    anchored = _anchored_heads(anchors)
    items = sorted(sessions.items())
    grouped_s = time.perf_counter() - t0
    results, used = verify_all_sessions(items, anchored, keys, signatures, jobs, progress)
    failures.extend(results.failures)
    heads: dict[str, dict[str, tuple[int, bytes]]] = {}
    for (tenant, session), head in sorted(results.heads.items()):
        heads.setdefault(tenant, {})[session] = head
    for (tenant, session), state in anchored.items():  # fully purged sessions keep their signed head
        if whole_tenant and (tenant_id is None or tenant == tenant_id):
            heads.setdefault(tenant, {}).setdefault(session, (state.index, state.head))
    tenants = sorted({*heads, *(cp.tenant for cp in checkpoints), *(a.tenant for a in anchors)})
    n_cp = n_anchor = 0
    for tenant in tenants:
        mine_cp = [cp for cp in checkpoints if cp.tenant == tenant]
        mine_an = [a for a in anchors if a.tenant == tenant]
        if not mine_cp and not mine_an and not whole_tenant:
            continue
        a, b = check_notes(tenant, mine_cp, mine_an, service_keys,
                           heads.get(tenant, {}) if whole_tenant else None, failures, notes)
        n_cp += a
        n_anchor += b
    if not signatures:
        notes.append("agent signatures not checked (--no-signatures)")
    return AuditReport(
        tenant_id=tenant_id, source=source, sessions=len(sessions), events=results.events,
        signatures_checked=results.signed, checkpoints_checked=n_cp, anchors_checked=n_anchor,
        failures=tuple(failures), chain_seconds=grouped_s + results.chain_s, signature_seconds=results.sig_s,
        notes=tuple(notes), processes=used.processes, processes_note=used.note,
    )
