"""agenttrail.audit: prove the trail. Verify chains, signatures, checkpoints and anchors; compare
ledger and ClickHouse; replay raw topics; export and verify self-contained session bundles.

`verify_tenant_from_store` is what `GET /api/audit/verify` calls in the serving process (which
owns the embedded ClickHouse store).
"""

from __future__ import annotations

from agenttrail.audit.report import AuditFailure, AuditReport
from agenttrail.audit.sources import load_from_store
from agenttrail.audit.verify import KeyLookup, StaticKeys, service_verifiers, verify_records
from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.sinks.clickhouse.store import ClickHouseStore

__all__ = [
    "AuditFailure",
    "AuditReport",
    "KeyLookup",
    "StaticKeys",
    "service_verifiers",
    "verify_records",
    "verify_tenant_from_store",
]


def verify_tenant_from_store(store: ClickHouseStore, registry_view: object, tenant_id: str,
                             session_id: str | None = None, *, signatures: bool = True) -> AuditReport:
    """Verify a tenant (or one session) from the ClickHouse tables: chains, payload hashes, agent
    signatures (keys from `registry_view.agent_key`), checkpoints and anchors (service keys from
    `registry_view.service_public_keys()`). Returns the report; `.ok`, `.to_json()` (a dict)."""
    validate_tenant_id(tenant_id)
    loaded = load_from_store(store, tenant_id, session_id)
    report = verify_records(
        loaded.records, registry_view,  # type: ignore[arg-type]
        checkpoints=loaded.checkpoints, anchors=loaded.anchors,
        service_keys=service_verifiers(registry_view), signatures=signatures,
        whole_tenant=session_id is None, tenant_id=tenant_id, source="clickhouse",
    )
    return report.with_failures(loaded.failures) if loaded.failures else report
