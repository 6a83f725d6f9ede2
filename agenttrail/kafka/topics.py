"""Topic names. A tenant id is validated before any topic name is built from it."""

from __future__ import annotations

import re

from agenttrail.errors import TenantError

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PREFIX = "agenttrail"

DLQ_TOPIC = f"{PREFIX}.dlq"
REGISTRY_TOPIC = f"{PREFIX}.registry"
CHECKPOINTS_TOPIC = f"{PREFIX}.checkpoints"
EMBEDDINGS_TOPIC = f"{PREFIX}.embeddings"
CHAIN_SNAPSHOTS_TOPIC = f"{PREFIX}.chain-snapshots"  # compacted: chain state per events partition
CHECKPOINTER_STATE_TOPIC = f"{PREFIX}.checkpointer-state"  # compacted: session heads per ledger partition

EVENTS_PATTERN = r"^agenttrail\.[a-z0-9][a-z0-9_-]*\.events$"
LEDGER_PATTERN = r"^agenttrail\.[a-z0-9][a-z0-9_-]*\.ledger$"
_TENANT_TOPIC_RE = re.compile(r"^agenttrail\.([a-z0-9][a-z0-9_-]{0,62})\.(events|ledger)$")


def validate_tenant_id(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not TENANT_ID_RE.fullmatch(tenant_id):
        raise TenantError(
            f"invalid tenant id {tenant_id!r}: use 1-63 of a-z 0-9 _ - starting with a letter or digit"
        )
    return tenant_id


def events_topic(tenant_id: str) -> str:
    return f"{PREFIX}.{validate_tenant_id(tenant_id)}.events"


def ledger_topic(tenant_id: str) -> str:
    return f"{PREFIX}.{validate_tenant_id(tenant_id)}.ledger"


def tenant_of_topic(topic: str) -> str | None:
    """The tenant a per-tenant topic belongs to, or None for any other topic."""
    match = _TENANT_TOPIC_RE.fullmatch(topic)
    return match.group(1) if match else None
