"""Self-contained, signed session bundles: `agenttrail audit export` / `verify-bundle` (pure).

A bundle (JSON, binary fields base64) holds one session's ledger records with every envelope
field, the agents' public keys with the time range the registry vouched for them, the latest
checkpoint note whose Merkle root covers the tenant's current session heads, an RFC 9162 inclusion
proof of this session's head in that tree, and the service verifier keys. The whole bundle is
signed by the service key over its RFC 8785 canonical JSON (without the `signature` member), so a
third party can check it offline: agent signatures, payload hashes, the chain from genesis, the
head's inclusion under the signed checkpoint root, and the checkpoint's signature.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from agenttrail.audit.report import AuditFailure, AuditReport
from agenttrail.audit.verify import KeyLookup, StaticKey, public_key_for, verify_records
from agenttrail.errors import AgentTrailError, VerificationError
from agenttrail.processors.checkpoint import Checkpoint, head_inclusion_proof, head_leaf, verify_checkpoint
from agenttrail.processors.merkle import hash_leaf, verify_inclusion
from agenttrail.processors.service_key import NoteVerifier, ServiceKey
from agenttrail.schemas.canonical import canonical_json
from agenttrail.schemas.envelope import Envelope
from agenttrail.schemas.ledger import LedgerRecord

FORMAT = "agenttrail-bundle/v1"
SIGNING_DOMAIN = b"agenttrail/bundle/v1\n"


class InvalidBundle(VerificationError):
    code = "invalid_bundle"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBundle(f"{what} is not base64", {"field": what}) from None


def record_to_json(rec: LedgerRecord) -> dict[str, Any]:
    env = rec.envelope
    return {
        "event_id": env.event_id, "tenant_id": env.tenant_id, "agent_id": env.agent_id,
        "session_id": env.session_id, "seq": env.seq, "ts": env.ts, "type": env.type,
        "payload": _b64(env.payload), "payload_sha256": _b64(env.payload_sha256),
        "attributes": dict(env.attributes), "key_id": env.key_id, "signature": _b64(env.signature),
        "chain_index": rec.chain_index, "prev_hash": _b64(rec.prev_hash), "entry_hash": _b64(rec.entry_hash),
        "seq_gap": rec.seq_gap, "source_partition": rec.source_partition, "source_offset": rec.source_offset,
    }


def record_from_json(obj: dict[str, Any]) -> LedgerRecord:
    try:
        env = Envelope(str(obj["event_id"]), str(obj["tenant_id"]), str(obj["agent_id"]), str(obj["session_id"]),
                       int(obj["seq"]), int(obj["ts"]), str(obj["type"]), _unb64(obj["payload"], "payload"),
                       _unb64(obj["payload_sha256"], "payload_sha256"),
                       {str(k): str(v) for k, v in dict(obj["attributes"]).items()}, str(obj["key_id"]),
                       _unb64(obj["signature"], "signature"))
        return LedgerRecord(env, int(obj["chain_index"]), _unb64(obj["prev_hash"], "prev_hash"),
                            _unb64(obj["entry_hash"], "entry_hash"), bool(obj["seq_gap"]),
                            int(obj["source_partition"]), int(obj["source_offset"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidBundle(f"malformed record: {exc}") from None


def _signed_part(bundle: dict[str, Any]) -> bytes:
    return SIGNING_DOMAIN + canonical_json({k: v for k, v in bundle.items() if k != "signature"})


def build_bundle(tenant_id: str, session_id: str, records: Sequence[LedgerRecord], keys: KeyLookup,
                 heads: dict[str, tuple[int, bytes]], checkpoints: Sequence[Checkpoint],
                 verifiers: Sequence[NoteVerifier], signer: ServiceKey, created_at: int) -> dict[str, Any]:
    """The signed bundle of one session; `heads` are the tenant's current session heads."""
    chain = sorted((r for r in records if r.envelope.session_id == session_id), key=lambda r: r.chain_index)
    if not chain:
        raise InvalidBundle(f"session {session_id!r} has no records", {"tenant": tenant_id})
    agent_keys: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in chain:
        env = rec.envelope
        public, reason = public_key_for(keys, rec)
        if public is None:
            raise VerificationError(f"no valid key for record {rec.chain_index}: {reason}",
                                    {"session": session_id, "chain_index": rec.chain_index})
        entry = agent_keys.setdefault((env.agent_id, env.key_id), {
            "agent_id": env.agent_id, "key_id": env.key_id, "public_key": _b64(public),
            "valid_from_ts": env.ts, "valid_until_ts": env.ts})
        entry["valid_from_ts"] = min(entry["valid_from_ts"], env.ts)
        entry["valid_until_ts"] = max(entry["valid_until_ts"], env.ts)
    covering = None
    for cp in reversed(checkpoints):
        try:
            verify_checkpoint(cp, verifiers, expected_heads=heads)
        except VerificationError:
            continue
        covering = cp
        break
    if covering is None:
        raise VerificationError("no signed checkpoint covers the current session heads yet; "
                                "retry after the next checkpoint", {"tenant": tenant_id})
    index, proof = head_inclusion_proof(heads, session_id)
    length, head = heads[session_id]
    bundle: dict[str, Any] = {
        "format": FORMAT, "tenant_id": tenant_id, "session_id": session_id, "created_at": created_at,
        "records": [record_to_json(r) for r in chain],
        "agent_keys": sorted(agent_keys.values(), key=lambda k: (k["agent_id"], k["key_id"])),
        "checkpoint": covering.to_text(),
        "inclusion": {"leaf_index": index, "tree_size": len(heads), "length": length, "head": _b64(head),
                      "proof": [_b64(p) for p in proof]},
        "service_keys": sorted({v.vkey for v in verifiers} | {signer.vkey}),
    }
    bundle["signature"] = {"key": signer.vkey, "sig": _b64(signer.sign(_signed_part(bundle)))}
    return bundle


class BundleKeys:
    """Agent keys as vouched for in a bundle: valid only within the exported time range."""

    def __init__(self, entries: list[dict[str, Any]], tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.keys = {(str(e["agent_id"]), str(e["key_id"])): (_unb64(e["public_key"], "public_key"),
                                                              int(e["valid_from_ts"]), int(e["valid_until_ts"]))
                     for e in entries}

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int, agent_id: str | None = None) -> StaticKey:
        found = self.keys.get((agent_id or "", key_id))
        if tenant_id != self.tenant_id or found is None:
            return StaticKey(False, "unknown_key", None)
        public, start, end = found
        if not start <= at_ts_micros <= end:
            return StaticKey(False, "key_expired", None)
        return StaticKey(True, None, public)


def verify_bundle(bundle: Any, trusted: Sequence[str] = ()) -> AuditReport:
    """Verify a bundle offline; `trusted` service vkeys pin the signer (else the bundle's own are used)."""
    try:
        return _verify_bundle(bundle, trusted)
    except (AgentTrailError, KeyError, TypeError, ValueError, AttributeError) as exc:
        tenant = bundle.get("tenant_id", "?") if isinstance(bundle, dict) else "?"
        return AuditReport(tenant_id=str(tenant), source="bundle",
                           failures=(AuditFailure("bundle", "malformed", str(tenant), None, None,
                                                  FORMAT, str(exc)),))


def _verify_bundle(bundle: Any, trusted: Sequence[str]) -> AuditReport:
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InvalidBundle(f"not an {FORMAT} bundle")
    tenant, session = str(bundle["tenant_id"]), str(bundle["session_id"])
    notes: list[str] = []
    if trusted:
        verifiers = [NoteVerifier.from_vkey(v) for v in trusted]
    else:
        verifiers = [NoteVerifier.from_vkey(str(v)) for v in bundle.get("service_keys", [])]
        notes.append("service key taken from the bundle itself; pin it with --service-key for a real audit")
    failures: list[AuditFailure] = []

    def fail(check: str, kind: str, index: int | None = None, expected: str = "", actual: str = "") -> None:
        failures.append(AuditFailure(check, kind, tenant, session, index, expected, actual))

    sig = bundle.get("signature") or {}
    signer = next((v for v in verifiers if v.vkey == sig.get("key")), None)
    if signer is None:
        fail("bundle", "untrusted_signer", None, " | ".join(v.vkey for v in verifiers), str(sig.get("key")))
    elif not signer.verify(_signed_part(bundle), _unb64(sig.get("sig", ""), "signature")):
        fail("bundle", "bad_signature", None, f"a signature by {signer.name}", "does not verify")
    records = [record_from_json(r) for r in bundle["records"]]
    if any((r.envelope.tenant_id, r.envelope.session_id) != (tenant, session) for r in records):
        fail("bundle", "foreign_record", None, f"{tenant}/{session}", "a record of another session")
    report = verify_records(records, BundleKeys(list(bundle["agent_keys"]), tenant), whole_tenant=False,
                            tenant_id=tenant, source="bundle")
    failures.extend(report.failures)
    cp = Checkpoint.from_text(str(bundle["checkpoint"]))
    try:
        verify_checkpoint(cp, verifiers)
    except VerificationError as exc:
        fail("checkpoint", str(exc).replace(" ", "_"))
    inc = bundle["inclusion"]
    last = max(records, key=lambda r: r.chain_index) if records else None
    length, head = int(inc["length"]), _unb64(inc["head"], "head")
    if last is None or (last.chain_index + 1, last.entry_hash) != (length, head):
        fail("checkpoint", "head_mismatch", last.chain_index if last else None,
             f"{length}:{head.hex()}", f"{last.chain_index + 1}:{last.entry_hash.hex()}" if last else "(none)")
    if int(inc["tree_size"]) != cp.size or cp.tenant != tenant:
        fail("checkpoint", "wrong_tree", None, f"{cp.tenant} size {cp.size}", f"{tenant} size {inc['tree_size']}")
    try:
        verify_inclusion(hash_leaf(head_leaf(session, length, head)), int(inc["leaf_index"]), int(inc["tree_size"]),
                         [_unb64(p, "proof") for p in inc["proof"]], cp.root)
    except VerificationError as exc:
        fail("checkpoint", "inclusion_proof_fails", None, cp.root.hex(), str(exc.where.get("actual", exc)))
    return AuditReport(tenant_id=tenant, source="bundle", sessions=report.sessions, events=report.events,
                       signatures_checked=report.signatures_checked, checkpoints_checked=1,
                       failures=tuple(failures), chain_seconds=report.chain_seconds,
                       signature_seconds=report.signature_seconds, notes=tuple(notes))
