"""Provision tenants with registered agents in one call (demo, bench and tests share it)."""

from __future__ import annotations

from dataclasses import dataclass

from agenttrail import crypto
from agenttrail.control.service import Registry


@dataclass(frozen=True, slots=True)
class ProvisionedAgent:
    tenant_id: str
    agent_id: str
    key_id: str
    key: crypto.SigningKey


def provision_tenant(registry: Registry, tenant_id: str, agents: int, *,
                     retention_days: int | None = None) -> list[ProvisionedAgent]:
    """Create the tenant if it is new, then register ``agents`` agents with fresh keypairs."""
    if registry.tenant(tenant_id) is None:
        registry.create_tenant(tenant_id, retention_days)
    out: list[ProvisionedAgent] = []
    for i in range(agents):
        key = crypto.SigningKey.generate()
        _, secret = registry.create_registration_key(tenant_id, ttl_seconds=3600, name=f"provision-{i}")
        agent_id, key_id = registry.register_agent(secret, key.public_key, f"sha256:provision-{tenant_id}-{i}")
        out.append(ProvisionedAgent(tenant_id, agent_id, key_id, key))
    return out
