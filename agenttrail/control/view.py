"""RegistryView: the pure materialized view of ``agenttrail.registry`` (no I/O, no clock).

``apply(record)`` is idempotent. It is order-dependent exactly where the log decides: the first valid
redeem of a registration key registers the agent unless a revocation of that key came first (a
revocation after the winning redeem changes nothing), and the first rotation to a given generation
wins; any later competitor is ignored, both while consuming live and when rebuilding after
compaction (those records have unique keys, so compaction keeps them in their original order).
The values it answers with are in answers.py.
Times are epoch microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agenttrail.control.answers import (
    AGENT_KEY_REASONS,
    AgentInfo,
    AgentKeyStatus,
    ApiKeyInfo,
    ApiKeyPrincipal,
    RegistrationKeyInfo,
    ServiceKey,
    Tenant,
)
from agenttrail.control.credentials import (
    API_KEY_PREFIX,
    RK_PREFIX,
    CredentialRejected,
    digests_equal,
    hash_secret,
    lookup_prefix,
)
from agenttrail.control.records import (
    AgentFingerprintRecord,
    AgentKeyRecord,
    AgentRevokeRecord,
    ApiKeyRecord,
    ApiKeyRevokeRecord,
    ApiKeyRotateRecord,
    ApiKeyUsedRecord,
    Record,
    RedeemRecord,
    RegistrationKeyRecord,
    RegistrationKeyRevokeRecord,
    ServiceKeyRecord,
    TenantRecord,
    TenantStatusRecord,
)

__all__ = [
    "AGENT_KEY_REASONS", "AgentInfo", "AgentKeyStatus", "ApiKeyInfo", "ApiKeyPrincipal",
    "RegistrationKeyInfo", "RegistryView", "ServiceKey", "Tenant",
]


@dataclass(slots=True)
class _Agent:
    registration: RedeemRecord
    # generation -> (key_id, public_key); valid_until for every generation that was rotated out
    keys: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    valid_until: dict[int, int] = field(default_factory=dict)
    generation: int = 0


class RegistryView:
    """All control-plane state, rebuilt by applying registry records in log order."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantRecord] = {}
        self._tenant_status: dict[str, TenantStatusRecord] = {}
        self._api_keys: dict[str, ApiKeyRecord] = {}
        self._api_by_prefix: dict[str, set[str]] = {}
        self._api_rotated: dict[str, ApiKeyRotateRecord] = {}
        self._api_revoked: dict[str, int] = {}
        self._api_used: dict[str, int] = {}
        self._rks: dict[str, RegistrationKeyRecord] = {}
        self._rk_by_prefix: dict[str, set[str]] = {}
        self._redeemed: dict[str, RedeemRecord] = {}
        self._rk_revoked: dict[str, RegistrationKeyRevokeRecord] = {}
        self._agents: dict[tuple[str, str], _Agent] = {}
        self._key_index: dict[tuple[str, str], tuple[str, int]] = {}  # (tenant, key_id) -> (agent, gen)
        self._agent_revoked: dict[tuple[str, str], int] = {}
        self._fingerprints: dict[tuple[str, str], set[str]] = {}
        self._service_keys: dict[tuple[str, str], ServiceKeyRecord] = {}
        self.applied = 0
        # Answers of tenant()/agent_key() that do not depend on the time, asked once per event by
        # the verifier. apply() swaps in a fresh dict *after* changing the state, so an answer
        # computed from older state can only land in a dict nobody reads any more.
        self._memo: dict[tuple[str, ...], object] = {}

    # ---- applying records -------------------------------------------------------------------
    def apply(self, record: Record) -> None:
        self.applied += 1
        match record:
            case TenantRecord():
                self._tenants[record.tenant_id] = record
            case TenantStatusRecord():
                self._tenant_status[record.tenant_id] = record
            case ApiKeyRecord():
                self._api_keys[record.key_id] = record
                self._api_by_prefix.setdefault(record.prefix, set()).add(record.key_id)
            case ApiKeyRotateRecord():
                self._api_rotated[record.key_id] = record
            case ApiKeyRevokeRecord():
                revoked = self._api_revoked.get(record.key_id, record.at)
                self._api_revoked[record.key_id] = min(record.at, revoked)
            case ApiKeyUsedRecord():
                used = self._api_used.get(record.key_id, 0)
                self._api_used[record.key_id] = max(record.last_used_at, used)
            case RegistrationKeyRecord():
                self._rks.setdefault(record.rk_id, record)
                self._rk_by_prefix.setdefault(record.prefix, set()).add(record.rk_id)
            case RedeemRecord():
                self._apply_redeem(record)
            case RegistrationKeyRevokeRecord():
                self._apply_rk_revoke(record)
            case AgentKeyRecord():
                self._apply_rotation(record)
            case AgentRevokeRecord():
                ident = (record.tenant_id, record.agent_id)
                self._agent_revoked[ident] = min(record.at, self._agent_revoked.get(ident, record.at))
            case AgentFingerprintRecord():
                ident = (record.tenant_id, record.agent_id)
                self._fingerprints.setdefault(ident, set()).add(record.fingerprint)
            case ServiceKeyRecord():
                self._service_keys[(record.service, record.key_id)] = record
        self._memo = {}

    def _apply_redeem(self, rec: RedeemRecord) -> None:
        rk = self._rks.get(rec.rk_id)
        if rk is None or rk.tenant_id != rec.tenant_id or rec.at > rk.expires_at:
            return
        if rec.rk_id in self._redeemed:  # single use: the first redeem in the log won
            return
        if rec.rk_id in self._rk_revoked:  # revoked earlier in the log
            return
        ident = (rec.tenant_id, rec.agent_id)
        if ident in self._agents or (rec.tenant_id, rec.key_id) in self._key_index:
            return
        self._redeemed[rec.rk_id] = rec
        self._agents[ident] = _Agent(registration=rec, keys={0: (rec.key_id, rec.public_key)})
        self._key_index[(rec.tenant_id, rec.key_id)] = (rec.agent_id, 0)
        self._fingerprints.setdefault(ident, set()).add(rec.fingerprint)

    def _apply_rk_revoke(self, rec: RegistrationKeyRevokeRecord) -> None:
        rk = self._rks.get(rec.rk_id)
        if rk is None or rk.tenant_id != rec.tenant_id:
            return
        if rec.rk_id in self._redeemed:  # the redeem came first in the log: its agent stays
            return
        self._rk_revoked.setdefault(rec.rk_id, rec)  # the first revocation's time is kept

    def _apply_rotation(self, rec: AgentKeyRecord) -> None:
        ident = (rec.tenant_id, rec.agent_id)
        agent = self._agents.get(ident)
        if agent is None or rec.generation != agent.generation + 1:
            return  # unknown agent, a replay, or a competing rotation that lost
        if (rec.tenant_id, rec.key_id) in self._key_index:
            return
        agent.valid_until[agent.generation] = rec.previous_valid_until
        agent.generation = rec.generation
        agent.keys[rec.generation] = (rec.key_id, rec.public_key)
        self._key_index[(rec.tenant_id, rec.key_id)] = (rec.agent_id, rec.generation)

    # ---- tenants ----------------------------------------------------------------------------
    def tenant(self, tenant_id: str) -> Tenant | None:
        memo = self._memo
        found = memo.get(("tenant", tenant_id))
        if found is not None:
            return found  # type: ignore[return-value]
        rec = self._tenants.get(tenant_id)
        if rec is None:
            return None
        status = self._tenant_status.get(tenant_id)
        tenant = Tenant(tenant_id, status.status if status else "active", rec.retention_days, rec.created_at)
        memo[("tenant", tenant_id)] = tenant
        return tenant

    def tenants(self) -> list[Tenant]:
        return [t for t in (self.tenant(tid) for tid in sorted(self._tenants)) if t is not None]

    # ---- API keys ---------------------------------------------------------------------------
    def authenticate(self, secret: str, now: int) -> ApiKeyPrincipal:
        """The principal of a bearer secret, or CredentialRejected (an AuthError) saying why."""
        prefix = lookup_prefix(secret, API_KEY_PREFIX)
        digest = hash_secret(secret)
        match: ApiKeyRecord | None = None
        for key_id in sorted(self._api_by_prefix.get(prefix, ())):
            rec = self._api_keys[key_id]
            if digests_equal(rec.secret_sha256, digest):
                match = rec
        if match is None:
            raise CredentialRejected("unknown", "unknown API key")
        info = self._api_info(match)
        status = info.status(now)
        if status not in ("active", "grace"):
            raise CredentialRejected(status, f"API key {match.key_id} is {status.replace('_', ' ')}")
        tenant = self.tenant(match.tenant_id)
        if tenant is None:
            raise CredentialRejected("unknown_tenant", f"unknown tenant {match.tenant_id!r}")
        if not tenant.active:
            raise CredentialRejected("tenant_disabled", f"tenant {match.tenant_id!r} is disabled")
        return ApiKeyPrincipal(match.tenant_id, match.key_id, match.scopes)

    def _api_info(self, rec: ApiKeyRecord) -> ApiKeyInfo:
        rotated = self._api_rotated.get(rec.key_id)
        revoked = self._api_revoked.get(rec.key_id)
        valid_until = rotated.valid_until if rotated else None
        if revoked is not None:
            valid_until = revoked if valid_until is None else min(valid_until, revoked)
        return ApiKeyInfo(
            key_id=rec.key_id, tenant_id=rec.tenant_id, prefix=rec.prefix, name=rec.name,
            scopes=rec.scopes, created_at=rec.created_at, expires_at=rec.expires_at,
            rotated_from=rec.rotated_from, rotated_to=rotated.new_key_id if rotated else None,
            valid_until=valid_until, revoked_at=revoked, last_used_at=self._api_used.get(rec.key_id),
        )

    def api_key(self, key_id: str) -> ApiKeyInfo | None:
        rec = self._api_keys.get(key_id)
        return self._api_info(rec) if rec else None

    def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        recs = (r for r in self._api_keys.values() if r.tenant_id == tenant_id)
        return [self._api_info(r) for r in sorted(recs, key=lambda r: (r.created_at, r.key_id))]

    # ---- registration keys ------------------------------------------------------------------
    def find_registration_key(self, secret: str) -> RegistrationKeyRecord:
        """The record of an ``rk_…`` secret (any state), or CredentialRejected('unknown')."""
        prefix = lookup_prefix(secret, RK_PREFIX)
        digest = hash_secret(secret)
        match = None
        for rk_id in sorted(self._rk_by_prefix.get(prefix, ())):
            if digests_equal(self._rks[rk_id].secret_sha256, digest):
                match = self._rks[rk_id]
        if match is None:
            raise CredentialRejected("unknown", "unknown registration key")
        return match

    def check_redeemable(self, secret: str, tenant_id: str | None, now: int) -> RegistrationKeyRecord:
        rk = self.find_registration_key(secret)
        if tenant_id is not None and rk.tenant_id != tenant_id:
            raise CredentialRejected("wrong_tenant", "registration key belongs to another tenant")
        if rk.rk_id in self._redeemed:
            raise CredentialRejected("redeemed", f"registration key {rk.rk_id} was already used")
        if rk.rk_id in self._rk_revoked:
            raise CredentialRejected("revoked", f"registration key {rk.rk_id} has been revoked")
        if now > rk.expires_at:
            raise CredentialRejected("expired", f"registration key {rk.rk_id} has expired")
        tenant = self.tenant(rk.tenant_id)
        if tenant is None or not tenant.active:
            raise CredentialRejected("tenant_disabled", f"tenant {rk.tenant_id!r} is not active")
        return rk

    def redeem_winner(self, rk_id: str) -> RedeemRecord | None:
        return self._redeemed.get(rk_id)

    def _rk_info(self, rk: RegistrationKeyRecord) -> RegistrationKeyInfo:
        won = self._redeemed.get(rk.rk_id)
        revoked = self._rk_revoked.get(rk.rk_id)
        return RegistrationKeyInfo(
            rk.rk_id, rk.tenant_id, rk.prefix, rk.name, rk.created_at, rk.expires_at,
            won.agent_id if won else None, won.at if won else None, revoked.at if revoked else None,
        )

    def registration_key(self, rk_id: str) -> RegistrationKeyInfo | None:
        rk = self._rks.get(rk_id)
        return self._rk_info(rk) if rk else None

    def registration_keys(self, tenant_id: str) -> list[RegistrationKeyInfo]:
        recs = (r for r in self._rks.values() if r.tenant_id == tenant_id)
        return [self._rk_info(r) for r in sorted(recs, key=lambda r: (r.created_at, r.rk_id))]

    # ---- agents -----------------------------------------------------------------------------
    def agent(self, tenant_id: str, agent_id: str) -> AgentInfo | None:
        ident = (tenant_id, agent_id)
        agent = self._agents.get(ident)
        if agent is None:
            return None
        key_id, public_key = agent.keys[agent.generation]
        fps = self._fingerprints.get(ident, set())
        return AgentInfo(
            tenant_id=tenant_id, agent_id=agent_id, key_id=key_id, public_key=public_key,
            generation=agent.generation, registered_at=agent.registration.at,
            rk_id=agent.registration.rk_id, fingerprints=tuple(sorted(fps)),
            clone_detected=len(fps) > 1, revoked_at=self._agent_revoked.get(ident),
        )

    def agents(self, tenant_id: str) -> list[AgentInfo]:
        ids = sorted(a for (t, a) in self._agents if t == tenant_id)
        return [info for info in (self.agent(tenant_id, a) for a in ids) if info is not None]

    def agent_key(self, tenant_id: str, key_id: str, at_ts_micros: int,
                  agent_id: str | None = None) -> AgentKeyStatus:
        """Whether ``key_id`` may sign for ``tenant_id`` (and ``agent_id`` when given) at that time.

        Fails closed: a key of another tenant is ``unknown_key``; a revoked agent's keys are refused
        whatever the timestamp; a rotated-out key is valid until the end of its grace period.
        """
        memo = self._memo
        ask = ("key", tenant_id, key_id, agent_id or "")
        found = memo.get(ask)
        if found is not None:
            return found  # type: ignore[return-value]

        def refuse(reason: str, owner: str | None = None) -> AgentKeyStatus:
            memo[ask] = status = AgentKeyStatus(False, reason, tenant_id, key_id, owner)
            return status

        if agent_id is not None and (tenant_id, agent_id) not in self._agents:
            return refuse("unknown_agent", agent_id)
        found = self._key_index.get((tenant_id, key_id))
        if found is None or (agent_id is not None and found[0] != agent_id):
            if agent_id is not None and (tenant_id, agent_id) in self._agent_revoked:
                return refuse("agent_revoked", agent_id)
            return refuse("unknown_key", agent_id)
        owner, generation = found
        if (tenant_id, owner) in self._agent_revoked:
            return refuse("agent_revoked", owner)
        agent = self._agents[(tenant_id, owner)]
        until = agent.valid_until.get(generation)
        if until is not None:  # a rotated-out key: the answer depends on the time, never memoised
            if at_ts_micros > until:
                return AgentKeyStatus(False, "key_expired", tenant_id, key_id, owner)
            return self._valid_status(tenant_id, key_id, owner, agent, generation)
        memo[ask] = status = self._valid_status(tenant_id, key_id, owner, agent, generation)
        return status

    def _valid_status(self, tenant_id: str, key_id: str, owner: str, agent: _Agent,
                      generation: int) -> AgentKeyStatus:
        return AgentKeyStatus(True, None, tenant_id, key_id, owner, agent.keys[generation][1], generation,
                              len(self._fingerprints.get((tenant_id, owner), ())) > 1)

    # ---- service keys -----------------------------------------------------------------------
    def service_public_keys(self) -> list[ServiceKey]:
        return [
            ServiceKey(r.service, r.key_id, r.public_key, r.created_at)
            for r in sorted(self._service_keys.values(), key=lambda r: (r.service, r.created_at, r.key_id))
        ]

    def service_public_key(self, key_id: str) -> bytes | None:
        for (_, kid), rec in self._service_keys.items():
            if kid == key_id:
                return rec.public_key
        return None
