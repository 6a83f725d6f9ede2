"""Pure planning of control-plane operations: (view, inputs, now) -> records to write (+ a secret).

Nothing here does I/O or reads a clock; the Registry shell writes the records and waits for them.
Checks made here against the view are advisory for races (two writers may both pass them); the
view's ``apply`` is what decides, in log order.
"""

from __future__ import annotations

from agenttrail import crypto
from agenttrail.control.credentials import (
    API_KEY_PREFIX,
    RK_PREFIX,
    hash_secret,
    lookup_prefix,
    new_api_key_secret,
    new_id,
    new_rk_secret,
)
from agenttrail.control.record_base import TENANT_STATUSES
from agenttrail.control.records import (
    SCOPES,
    AgentFingerprintRecord,
    AgentKeyRecord,
    AgentRevokeRecord,
    ApiKeyRecord,
    ApiKeyRevokeRecord,
    ApiKeyRotateRecord,
    ControlError,
    RedeemRecord,
    RegistrationKeyRecord,
    RegistrationKeyRevokeRecord,
    TenantRecord,
    TenantStatusRecord,
    validate_id,
)
from agenttrail.control.view import AgentInfo, ApiKeyInfo, RegistrationKeyInfo, RegistryView, Tenant
from agenttrail.errors import NotFound, TenantError
from agenttrail.kafka.topics import validate_tenant_id

MICROS = 1_000_000
MAX_RETENTION_DAYS = 36_500


def _retention(days: int) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_RETENTION_DAYS:
        raise ControlError(f"retention must be 1..{MAX_RETENTION_DAYS} days, got {days!r}")
    return days


def require_tenant(view: RegistryView, tenant_id: str, *, active: bool = True) -> Tenant:
    tenant = view.tenant(validate_tenant_id(tenant_id))
    if tenant is None:
        raise TenantError(f"unknown tenant {tenant_id!r}")
    if active and not tenant.active:
        raise TenantError(f"tenant {tenant_id!r} is disabled")
    return tenant


def plan_tenant(view: RegistryView, tenant_id: str, retention_days: int, now: int) -> TenantRecord:
    validate_tenant_id(tenant_id)
    if view.tenant(tenant_id) is not None:
        raise TenantError(f"tenant {tenant_id!r} already exists")
    return TenantRecord(tenant_id, _retention(retention_days), now)


def plan_retention(view: RegistryView, tenant_id: str, retention_days: int) -> TenantRecord:
    tenant = require_tenant(view, tenant_id, active=False)
    return TenantRecord(tenant_id, _retention(retention_days), tenant.created_at)


def plan_tenant_status(view: RegistryView, tenant_id: str, status: str,
                       now: int) -> TenantStatusRecord | None:
    """The record that puts the tenant in ``status``; None when it is in it already (nothing to write)."""
    if status not in TENANT_STATUSES:
        raise ControlError(f"unknown tenant status {status!r}; choose from {sorted(TENANT_STATUSES)}")
    tenant = require_tenant(view, tenant_id, active=False)
    if tenant.status == status:
        return None
    return TenantStatusRecord(tenant_id, status, now)


def normalize_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(scopes)))
    if not chosen:
        raise ControlError("an API key needs at least one scope (an empty scope list grants nothing)")
    unknown = set(chosen) - SCOPES
    if unknown:
        raise ControlError(f"unknown scopes {sorted(unknown)}; choose from {sorted(SCOPES)}")
    return chosen


def plan_api_key(view: RegistryView, tenant_id: str, scopes: list[str] | tuple[str, ...], now: int, *,
                 name: str = "", expires_at: int | None = None,
                 rotated_from: str | None = None) -> tuple[ApiKeyRecord, str]:
    """A new API key record and its secret (to show once, never to store)."""
    require_tenant(view, tenant_id)
    if expires_at is not None and expires_at <= now:
        raise ControlError("an API key cannot expire in the past")
    if len(name) > 128:
        raise ControlError("key name longer than 128 characters")
    secret = new_api_key_secret()
    record = ApiKeyRecord(
        key_id=new_id("ak"), tenant_id=tenant_id, prefix=lookup_prefix(secret, API_KEY_PREFIX),
        secret_sha256=hash_secret(secret), scopes=normalize_scopes(scopes), name=name,
        created_at=now, expires_at=expires_at, rotated_from=rotated_from,
    )
    return record, secret


def require_api_key(view: RegistryView, key_id: str, tenant_id: str | None = None) -> ApiKeyInfo:
    info = view.api_key(key_id)
    if info is None or (tenant_id is not None and info.tenant_id != tenant_id):
        raise NotFound(f"unknown API key {key_id!r}")
    return info


def plan_rotate_api_key(view: RegistryView, key_id: str, now: int, grace_seconds: int,
                        tenant_id: str | None = None) -> tuple[ApiKeyRecord, ApiKeyRotateRecord, str]:
    old = require_api_key(view, key_id, tenant_id)
    if old.status(now) not in ("active",):
        raise ControlError(f"API key {key_id} is {old.status(now)}; only an active key can be rotated")
    new, secret = plan_api_key(view, old.tenant_id, old.scopes, now, name=old.name,
                               expires_at=old.expires_at if old.expires_at and old.expires_at > now else None,
                               rotated_from=key_id)
    rotate = ApiKeyRotateRecord(key_id, old.tenant_id, new.key_id, now, now + grace_seconds * MICROS)
    return new, rotate, secret


def plan_revoke_api_key(view: RegistryView, key_id: str, now: int,
                        tenant_id: str | None = None) -> ApiKeyRevokeRecord:
    info = require_api_key(view, key_id, tenant_id)
    return ApiKeyRevokeRecord(key_id, info.tenant_id, now)


def plan_registration_key(view: RegistryView, tenant_id: str, ttl_seconds: int, now: int, *,
                          name: str = "") -> tuple[RegistrationKeyRecord, str]:
    require_tenant(view, tenant_id)
    if ttl_seconds <= 0:
        raise ControlError("a registration key needs a positive lifetime")
    secret = new_rk_secret()
    record = RegistrationKeyRecord(
        rk_id=new_id("rk"), tenant_id=tenant_id, prefix=lookup_prefix(secret, RK_PREFIX),
        secret_sha256=hash_secret(secret), name=name, created_at=now,
        expires_at=now + ttl_seconds * MICROS,
    )
    return record, secret


def require_registration_key(view: RegistryView, rk_id: str,
                             tenant_id: str | None = None) -> RegistrationKeyInfo:
    info = view.registration_key(rk_id)
    if info is None or (tenant_id is not None and info.tenant_id != tenant_id):
        raise NotFound(f"unknown registration key {rk_id!r}")
    return info


def plan_revoke_registration_key(view: RegistryView, rk_id: str, now: int,
                                 tenant_id: str | None = None) -> RegistrationKeyRevokeRecord | None:
    """Revoke an unused registration key; None when it is revoked already (nothing to write).

    A redeemed key cannot be revoked: it did its one job, and its agent is revoked on its own.
    An expired key can (it reads "revoked" afterwards).
    """
    info = require_registration_key(view, rk_id, tenant_id)
    if info.redeemed_by is not None:
        raise ControlError(f"registration key {rk_id} was already used (it registered agent "
                           f"{info.redeemed_by}); revoke the agent instead")
    if info.revoked_at is not None:
        return None
    return RegistrationKeyRevokeRecord(rk_id, info.tenant_id, new_id("rkr"), now)


def _public_key(public_key: bytes) -> bytes:
    if not isinstance(public_key, bytes) or len(public_key) != crypto.PUBLIC_LEN:
        raise ControlError("an agent public key is 32 raw Ed25519 bytes")
    if not crypto.public_key_ok(public_key):
        raise ControlError("not a usable Ed25519 public key (not a canonical point of prime order)")
    return public_key


def plan_redeem(view: RegistryView, rk_secret: str, public_key: bytes, fingerprint: str, now: int, *,
                tenant_id: str | None = None) -> RedeemRecord:
    """A redeem attempt; it registers the agent only if it is the first valid one in the log."""
    rk = view.check_redeemable(rk_secret, tenant_id, now)
    key_id = crypto.key_id_for(_public_key(public_key))
    if view.agent_key(rk.tenant_id, key_id, now).agent_id is not None:
        raise ControlError("this public key is already registered; generate a new keypair")
    return RedeemRecord(rk.rk_id, rk.tenant_id, new_id("ag"), key_id, public_key,
                        _fingerprint(fingerprint), now)


def _fingerprint(fingerprint: str) -> str:
    if not isinstance(fingerprint, str) or not 0 < len(fingerprint) <= 256 or not fingerprint.isprintable():
        raise ControlError("a machine fingerprint is 1-256 printable characters")
    return fingerprint


def require_agent(view: RegistryView, tenant_id: str, agent_id: str, *, active: bool = True) -> AgentInfo:
    require_tenant(view, tenant_id, active=False)
    validate_id(agent_id, "agent id")
    agent = view.agent(tenant_id, agent_id)
    if agent is None:
        raise NotFound(f"unknown agent {agent_id!r} in tenant {tenant_id!r}")
    if active and agent.revoked_at is not None:
        raise ControlError(f"agent {agent_id!r} is revoked")
    return agent


def plan_rotate_agent(view: RegistryView, tenant_id: str, agent_id: str, public_key: bytes, now: int,
                      grace_seconds: int) -> AgentKeyRecord:
    agent = require_agent(view, tenant_id, agent_id)
    require_tenant(view, tenant_id)
    key_id = crypto.key_id_for(_public_key(public_key))
    if view.agent_key(tenant_id, key_id, now).agent_id is not None:
        raise ControlError("this public key is already registered; generate a new keypair")
    return AgentKeyRecord(tenant_id, agent_id, agent.generation + 1, key_id, public_key, now,
                          now + grace_seconds * MICROS)


def plan_revoke_agent(view: RegistryView, tenant_id: str, agent_id: str, now: int,
                      reason: str = "") -> AgentRevokeRecord:
    require_agent(view, tenant_id, agent_id, active=False)
    return AgentRevokeRecord(tenant_id, agent_id, now, reason[:256])


def plan_fingerprint(view: RegistryView, tenant_id: str, agent_id: str, fingerprint: str,
                     now: int) -> AgentFingerprintRecord | None:
    """A record for a fingerprint not seen before for this agent (None when already known)."""
    agent = require_agent(view, tenant_id, agent_id, active=False)
    if _fingerprint(fingerprint) in agent.fingerprints:
        return None
    return AgentFingerprintRecord(tenant_id, agent_id, fingerprint, now)
